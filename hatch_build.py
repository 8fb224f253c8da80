"""Hatchling build hook: a wheel or sdist always carries the built web console.

The console's assets (``src/modelyard/console/static/``) are built from ``console/`` by
``npm ci`` and ``node build.mjs`` (what ``make console`` runs) and are not committed. A
package built without them would serve ``/`` as 503 "not built", so before a wheel or an
sdist is built this hook builds them when they are missing or older than their sources,
and stops the build with the fix when it cannot. An sdist carries them too, so a wheel
built from an sdist needs no Node.js. Editable installs (``pip install -e .``) are left
alone: they serve the source tree's folder, which ``make console`` keeps up to date.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SKIP_ENV = "MODELYARD_BUILD_WITHOUT_CONSOLE"


def _sources(console: Path) -> list[Path]:
    files = [console / "package-lock.json", console / "build.mjs"]
    files += [p for p in (console / "src").rglob("*") if p.is_file()]
    return [p for p in files if p.exists()]


def console_is_current(root: Path) -> bool:
    """Whether ``static/`` has a build (its ``.built`` stamp and ``index.html``) no older
    than any console source. Without ``console/`` (an unpacked sdist built elsewhere) a
    present build counts as current."""
    static = root / "src" / "modelyard" / "console" / "static"
    stamp = static / ".built"
    if not (stamp.is_file() and (static / "index.html").is_file()):
        return False
    console = root / "console"
    if not console.is_dir():
        return True
    built = stamp.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in _sources(console))


def ensure_console(root: Path) -> None:
    """Build the console into ``static/`` unless it is current; RuntimeError saying what
    to do when it is missing and cannot be built here."""
    if console_is_current(root) or os.environ.get(SKIP_ENV) == "1":
        return
    console = root / "console"
    missing = [tool for tool in ("npm", "node") if shutil.which(tool) is None]
    if not (console / "package.json").is_file() or missing:
        why = f"{' and '.join(missing)} not found on PATH" if missing else "no console/ here"
        raise RuntimeError(
            "the web console (src/modelyard/console/static) is not built or is older than "
            f"console/, and it cannot be built here ({why}). Install Node.js 18+ with npm "
            f"and build again, run 'make console' first, or set {SKIP_ENV}=1 to build a "
            "package without it (its / then answers 503)."
        )
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=console, check=True
    )
    subprocess.run(["node", "build.mjs"], cwd=console, check=True)
    (root / "src" / "modelyard" / "console" / "static" / ".built").touch()


class ConsoleBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        ensure_console(Path(self.root))
