"""Regenerate the console screenshots in docs/img/ from the quickstart's real data.

Runs ``examples/quickstart.py`` into a fresh temporary home (or the home given with
``--home``, reused as it is), starts the control plane on a free loopback port in this
process, and saves one PNG per page with Debian's Chromium driven by Playwright.
Usage: ``make screenshots`` or ``.venv/bin/python scripts/screenshots.py [--home DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from playwright.sync_api import sync_playwright

import modelyard as my
from modelyard.config import Settings
from modelyard.runtime import Runtime
from modelyard.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_quickstart(home: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(home)}
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def pages(home: Path) -> list[tuple[str, str, str]]:
    """(file name, hash route, selector to wait for) for every page, from the home's data."""
    client = my.connect(home=home)
    try:
        runs = client.tracking.search_runs(limit=10, order_by="attributes.start_time").runs
        jobs = client.jobs.list(limit=1).jobs
        model = client.models.list(limit=1).models[0]
        datasets = client.datasets.list(limit=100).datasets
        dataset = next((d for d in datasets if d.name == "customers"), datasets[0])
        version = client.models.version(model.name, model.latest_version)
    finally:
        client.close()
    job_run = next((r for r in runs if r.job_id), runs[0])
    out = [
        ("overview.png", "#/", "section.card"),
        ("datasets.png", f"#/datasets/{dataset.name}", "svg.hist"),
        ("experiments.png", f"#/experiments/{job_run.experiment}", "table.runs tbody tr"),
        ("run.png", f"#/runs/{job_run.id}", "figure.chart canvas"),
        ("models.png", f"#/models/{model.name}?version={version.version}", "table.history"),
        ("lineage.png", f"#/lineage/model_version/{version.id}", "svg.lineage"),
        ("audit.png", "#/audit", "table.grid tbody tr"),
    ]
    if jobs:
        out.insert(2, ("jobs.png", f"#/jobs/{jobs[0].id}", "pre.log span"))
    if len(runs) >= 2:
        ids = ",".join(r.id for r in runs[:2])
        out.insert(-2, ("compare.png", f"#/compare?runs={ids}", "table.compare"))
    return out


def start_endpoint(url: str) -> bool:
    """Serve the quickstart's production model as endpoint ``churn`` (True once ready)."""
    with my.connect(url) as client:
        try:
            client.endpoints.create(
                "churn",
                [{"model": "churn", "version": "production"}],
                capture={"percent": 100, "flush_seconds": 1},
            )
            client.endpoints.wait("churn", timeout=180)
        except my.ModelyardError as exc:
            print(f"no endpoint screenshot: {exc}", file=sys.stderr)
            return False
    return True


def send_traffic(url: str, stop: threading.Event) -> None:
    """Score a few customers in a loop (tenure_months, monthly_spend, plan), as an app would."""
    rows = [[3, 72.5, 0], [40, 35.0, 2], [12, 48.0, 1]]
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            http.post(f"{url}/endpoints/churn/invocations", json=rows)
            time.sleep(0.02)


def stop_endpoint(url: str) -> None:
    with my.connect(url) as client:
        client.endpoints.delete("churn", wait=True)


def shoot_endpoint(page: Any, url: str) -> None:
    page.goto(f"{url}/#/endpoints/churn")
    page.wait_for_selector("table.variants")
    stop = threading.Event()
    sender = threading.Thread(target=send_traffic, args=(url, stop))
    sender.start()
    try:
        page.wait_for_timeout(12_000)  # six polls of the traffic charts
    finally:
        stop.set()
        sender.join(30)
    page.wait_for_selector("pre.capture", timeout=30_000)  # capture files are flushed
    page.screenshot(path=str(OUT / "endpoints.png"), full_page=True)
    print("docs/img/endpoints.png  <- #/endpoints/churn")


def shoot(url: str, shots: list[tuple[str, str, str]], endpoint: bool) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed: run 'make browser'")
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page: Any = browser.new_page(viewport={"width": 1280, "height": 860})
        page.on("pageerror", lambda exc: print(f"page error: {exc}", file=sys.stderr))
        for name, route, ready in shots:
            page.goto(f"{url}/{route}")
            page.wait_for_selector(ready)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / name), full_page=True)
            print(f"docs/img/{name}  <- {route}")
        if endpoint:
            shoot_endpoint(page, url)
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="reuse this home instead of a quickstart")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="modelyard-screens-"))
    if args.home is None:
        print(f"running the quickstart into {home} …")
        run_quickstart(home)
    port = free_port()
    runtime = Runtime(Settings.from_env(home=home, port=port))
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    try:
        url = f"http://127.0.0.1:{port}"
        endpoint = start_endpoint(url)
        try:
            shoot(url, pages(home), endpoint)
        finally:
            if endpoint:
                stop_endpoint(url)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        runtime.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
