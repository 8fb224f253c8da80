// The console's entry point: who is signed in, the navigation, and the hash router.
import { ApiError, can, get, getToken, setToken } from "./api.js";
import { ErrorBox, Redirect, html, parseHash, useEffect, useState } from "./ui.js";
import { render } from "./vendor/preact-htm.js";
import { Audit } from "./pages/audit.js";
import { DatasetDetail, DatasetList } from "./pages/datasets.js";
import { EndpointDetail, EndpointList } from "./pages/endpoints.js";
import { Compare, ExperimentList, ExperimentRef, RunDetail } from "./pages/experiments.js";
import { JobDetail, JobList } from "./pages/jobs.js";
import { Lineage } from "./pages/lineage.js";
import { ModelDetail, ModelList } from "./pages/models.js";
import { Overview } from "./pages/overview.js";

function SignIn({ error, onToken }) {
  const [value, setValue] = useState("");
  return html`<main class="signin">
    <h1>modelyard</h1>
    <form onSubmit=${(e) => { e.preventDefault(); onToken(value.trim()); }}>
      <label>API token <input name="token" type="password" autocomplete="off" value=${value}
        onInput=${(e) => setValue(e.target.value)} placeholder="myt_…" /></label>
      <button type="submit" class="primary">Sign in</button>
    </form>
    <p class="muted">Create a token with <code>modelyard tokens create</code>. It is kept in this tab only.</p>
    <${ErrorBox} error=${error} />
  </main>`;
}

const NAV = [
  ["", "Overview", "jobs.read"],
  ["datasets", "Datasets", "datasets.read"],
  ["jobs", "Jobs", "jobs.read"],
  ["experiments", "Experiments", "tracking.read"],
  ["models", "Models", "models.read"],
  ["endpoints", "Endpoints", "endpoints.read"],
  ["audit", "Audit", "audit.admin"],
];

/**
 * The canonical route for an address in MLflow's UI shape (the links the mlflow client
 * prints, such as "#/experiments/<experiment id>/runs/<run id>"), or null. An experiment
 * named by MLflow's id is resolved by the ExperimentRef page.
 */
function fromMlflow(route) {
  const [first, a, b, c] = route.parts;
  // #/experiments/<id>/runs/<run id>[/<tab>…]: a run id is enough to find the run.
  if (first === "experiments" && b === "runs" && c) return { parts: ["runs", c] };
  // #/experiments/<id>/<tab> (overview, traces, …): the experiment itself.
  if (first === "experiments" && a && b) return { parts: ["experiments", a] };
  // #/models/<name>/versions/<n>
  if (first === "models" && a && b === "versions" && c) return { parts: ["models", a], query: { version: c } };
  // #/compare-runs?runs=["<id>","<id>"]&experiments=[…]
  if (first === "compare-runs") {
    let ids = [];
    try {
      ids = JSON.parse(route.query.get("runs") || "[]");
    } catch {
      ids = [];
    }
    if (Array.isArray(ids)) return { parts: ["compare"], query: { runs: ids.map(String).join(",") } };
  }
  return null;
}

function page(me, route) {
  const canonical = fromMlflow(route);
  if (canonical) return html`<${Redirect} parts=${canonical.parts} query=${canonical.query} />`;
  const [first, a, b] = route.parts;
  const q = route.query;
  switch (first) {
    case undefined: case "": return html`<${Overview} me=${me} />`;
    case "datasets": return a ? html`<${DatasetDetail} name=${a} query=${q} />` : html`<${DatasetList} />`;
    case "jobs": return a ? html`<${JobDetail} jobId=${a} />` : html`<${JobList} />`;
    case "experiments": return a ? html`<${ExperimentRef} nameOrId=${a} query=${q} />` : html`<${ExperimentList} />`;
    case "runs": return html`<${RunDetail} runId=${a} />`;
    case "compare": return html`<${Compare} query=${q} />`;
    case "models": return a ? html`<${ModelDetail} me=${me} name=${a} query=${q} />` : html`<${ModelList} />`;
    case "endpoints": return a ? html`<${EndpointDetail} name=${a} />` : html`<${EndpointList} />`;
    case "lineage": return html`<${Lineage} type=${a} id=${b} />`;
    case "audit": return html`<${Audit} query=${q} />`;
    default: return html`<p>No such page. <a href="#/">Overview</a></p>`;
  }
}

function App() {
  const [me, setMe] = useState(null);
  const [error, setError] = useState(null);
  const [needToken, setNeedToken] = useState(false);
  const [route, setRoute] = useState(parseHash(location.hash));

  const whoami = async () => {
    try {
      setMe(await get("/me"));
      setNeedToken(false);
      setError(null);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        if (getToken()) setError(e);
        setToken(null);
        setNeedToken(true);
      } else {
        setError(e);
      }
    }
  };
  useEffect(() => {
    whoami();
    const onHash = () => {
      setRoute(parseHash(location.hash));
      window.scrollTo(0, 0);
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  if (needToken) return html`<${SignIn} error=${error} onToken=${(t) => { setToken(t); whoami(); }} />`;
  if (!me) return error ? html`<${ErrorBox} error=${error} />` : html`<p class="boot">Loading…</p>`;

  const signOut = () => {
    setToken(null);
    setMe(null);
    setNeedToken(true);
  };
  const current = route.parts[0] === "runs" || route.parts[0] === "compare" ? "experiments" : route.parts[0] || "";
  return html`<div class="layout">
    <nav class="top">
      <a class="brand" href="#/">modelyard</a>
      ${NAV.filter(([, , perm]) => can(me, perm)).map(
        ([path, label]) => html`<a key=${path} href=${"#/" + path} class=${current === path ? "active" : ""}>${label}</a>`,
      )}
      <span class="spacer"></span>
      <span class="who" title=${me.permissions.join(" ")}>${me.user} · ${me.role}</span>
      ${me.auth && html`<button class="link" name="sign-out" onClick=${signOut}>Sign out</button>`}
    </nav>
    <main>${page(me, route)}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
