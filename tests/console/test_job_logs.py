"""A job's page tails its log while it runs and shows the final state when it ends."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from modelyard.client.sdk import Client, connect
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings

SCRIPT = """
import time

for i in range(8):
    print(f"epoch {i} <b>not bold</b>", flush=True)
    time.sleep(0.5)
"""


@pytest.fixture
def plane(tmp_path: Path, chromium_path: str) -> Iterator[tuple[str, Client]]:
    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        with LiveServer(runtime) as server:
            client = connect(server.url)
            try:
                yield server.url, client
            finally:
                client.close()
    finally:
        runtime.close()


def test_log_tail_follows_a_running_job(
    plane: tuple[str, Client], page: Any, tmp_path: Path
) -> None:
    url, client = plane
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(textwrap.dedent(SCRIPT))
    entry, digest = client.jobs.upload_source("train.py", tmp_path / "src")
    job = client.jobs.submit({"entry_point": entry, "source_digest": digest, "name": "tail-me"})
    page.goto(f"{url}/#/jobs/{job.id}")
    log = page.locator("pre.log")
    expect(log).to_contain_text("epoch 0 <b>not bold</b>", timeout=60_000)
    assert page.locator("pre.log b").count() == 0  # log text is never markup
    expect(log).to_contain_text("epoch 7", timeout=60_000)
    # When the job ends the page reloads it: its final state replaces Pending/Running.
    expect(page.locator("dl.facts .badge").first).to_have_text("Completed", timeout=60_000)
    assert log.inner_text().count("epoch ") == 8  # every line once, none repeated by polling
