"""A built package carries the web console: a wheel built from a clean source tree (no
``static/``, as in a fresh clone) contains the console's files, and a server installed
from that wheel alone serves it at ``/``. Plus the build hook's refusal when it cannot
build the console (``hatch_build.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import hatch_build
import httpx
import pytest

from testkit import free_port

ROOT = Path(__file__).resolve().parents[2]
STATIC = "modelyard/console/static"
# The build backend is in the environment (dev extra): nothing is downloaded.
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


def _clean_tree(dest: Path) -> Path:
    """The files a fresh clone has for a build: no built console, no node_modules."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md", "hatch_build.py", ".gitignore"):
        shutil.copy2(ROOT / name, dest / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "static", "node_modules")
    shutil.copytree(ROOT / "src", dest / "src", ignore=junk)
    shutil.copytree(ROOT / "console", dest / "console", ignore=junk)
    return dest


def _wait_ready(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, server.communicate()[0]
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.2)


def test_a_wheel_from_a_clean_tree_carries_and_serves_the_console(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to build the console (make console needs it too)")
    tree = _clean_tree(tmp_path / "tree")
    # npm installs the console's locked libraries from its cache (which `make console`,
    # run before the tests, filled), never from the network.
    env = {**os.environ, "npm_config_offline": "true"}
    built = subprocess.run(
        [*PIP_WHEEL, str(tree), "-w", str(tmp_path / "dist")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    hint = "(ENOTCACHED: run 'make console', whose npm ci fills npm's cache)\n"
    assert built.returncode == 0, hint + built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("modelyard-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for asset in ("index.html", "app.js", "vendor/preact-htm.js", "vendor/uPlot.esm.js"):
            assert f"{STATIC}/{asset}" in names, sorted(n for n in names if "console" in n)
        index = zf.read(f"{STATIC}/index.html")
        zf.extractall(tmp_path / "site")

    # The installed wheel alone (it comes first on sys.path, before the source tree).
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "site"),
        "MODELYARD_HOME": str(tmp_path / "home"),
    }
    where = subprocess.run(
        [sys.executable, "-c", "import modelyard.console as c; print(c.static_dir())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.strip() == str(tmp_path / "site" / STATIC), where.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        page = httpx.get(url + "/")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.content == index
        script = httpx.get(url + "/console/vendor/preact-htm.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_the_build_stops_with_the_fix_when_it_cannot_build_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _clean_tree(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    monkeypatch.delenv(hatch_build.SKIP_ENV, raising=False)
    with pytest.raises(RuntimeError, match=r"\(npm and node not found on PATH\)") as err:
        hatch_build.ensure_console(tree)
    assert "run 'make console' first" in str(err.value)
    assert not (tree / "src" / STATIC).exists()
    # A build older than one of its sources is rebuilt, and without npm refused alike.
    static = tree / "src" / STATIC
    static.mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html>")
    (static / ".built").touch()
    assert hatch_build.console_is_current(tree)
    later = (static / ".built").stat().st_mtime + 10
    os.utime(tree / "console" / "src" / "app.js", (later, later))
    assert not hatch_build.console_is_current(tree)
    with pytest.raises(RuntimeError, match="older than console/"):
        hatch_build.ensure_console(tree)
    # Asked for explicitly, a package without the console builds.
    monkeypatch.setenv(hatch_build.SKIP_ENV, "1")
    hatch_build.ensure_console(tree)


@pytest.mark.parametrize("target", ["quickstart", "dist"])
def test_make_builds_the_console_before(target: str) -> None:
    """`make quickstart` ends by printing console URLs, and `make dist` packages the
    console: both build it first (`-n -B`: what make would run, run nothing)."""
    if shutil.which("make") is None:
        pytest.fail("make is needed: the README's commands are make targets")
    plan = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    built = next(i for i, line in enumerate(lines) if "node build.mjs" in line)
    last = {"quickstart": "examples/quickstart.py", "dist": "hatchling build"}[target]
    assert built < next(i for i, line in enumerate(lines) if last in line), plan.stdout
