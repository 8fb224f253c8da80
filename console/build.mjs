// Builds the console into ../src/modelyard/console/static/: our ES modules and CSS as they
// are (no bundler), plus the prebuilt browser files of the npm dependencies. Run by
// `make console` after `npm ci`; nothing is fetched at run time.
import { cpSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "modelyard", "console", "static");
const vendor = {
  "preact-htm.js": "htm/preact/standalone.module.js",
  "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
  "uPlot.min.css": "uplot/dist/uPlot.min.css",
  // The API docs page (/docs, src/modelyard/server/docs.py): Swagger UI without a CDN.
  "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
  "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
};

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "vendor"), { recursive: true });
cpSync(join(here, "src"), out, { recursive: true });
for (const [name, from] of Object.entries(vendor)) {
  const src = join(here, "node_modules", from);
  if (!existsSync(src)) {
    console.error(`missing ${src}: run 'npm ci' in console/ first`);
    process.exit(1);
  }
  cpSync(src, join(out, "vendor", name));
}
console.log(`console built into ${out}`);
