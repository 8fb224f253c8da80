"""Browser fixtures: Debian's Chromium driven by Playwright, a seeded server with auth.

Chromium comes from the system (``make browser``); Playwright never downloads one. If it
or the built console (``make console``) is missing, the browser tests are skipped with the
reason, except under ``CI=true``, where they fail: CI must not pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolekit import Console, seed

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.console import static_dir
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        _missing("Debian's chromium is not installed: run 'make browser'")
    if not (static_dir() / "index.html").is_file():
        _missing("the console is not built: run 'make console'")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an
    event loop running in the main thread while it is open, which would break later
    tests that call ``asyncio.run``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def console(tmp_path: Path, chromium_path: str) -> Iterator[Console]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    admin.users.create("root", "admin")
    admin.users.create("vera", "viewer")
    admin_token = admin.tokens.create("root").token
    viewer_token = admin.tokens.create("vera").token
    runs = seed(admin)
    with LiveServer(runtime) as server:
        yield Console(server.url, runtime, admin, admin_token, viewer_token, runs)
    admin.close()
    runtime.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (so a fresh sessionStorage). Any JavaScript dialog or
    uncaught page error fails the test: that is how an injected script would show."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    yield pg
    context.close()
    assert not problems, problems
