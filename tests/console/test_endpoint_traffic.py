"""An endpoint's page: variants, replicas, and a traffic chart that moves under load."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from modelyard.client.sdk import Client, connect
from modelyard.flavors import save_model
from modelyard.runtime import Runtime
from testkit import LiveServer, make_settings


def _stop_replicas(home: Path) -> None:
    import contextlib
    import json
    import os
    import signal

    for sup in (home / "endpoints" / "replicas").glob("*/*/supervisor.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(sup.read_text())
            for key in ("pid", "child_pid"):
                with contextlib.suppress(ProcessLookupError, PermissionError, TypeError, KeyError):
                    os.kill(int(data[key]), signal.SIGKILL)


@pytest.fixture
def served(tmp_path: Path, chromium_path: str) -> Iterator[tuple[str, Client]]:
    """A control plane with its controller, and an endpoint serving a small model."""
    from sklearn.linear_model import LogisticRegression

    runtime = Runtime(make_settings(tmp_path))
    runtime.start_background()
    try:
        with LiveServer(runtime) as server:
            client = connect(server.url)
            try:
                x = np.random.default_rng(7).normal(size=(60, 3))
                model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
                save_model(model, tmp_path / "model", sample_input=x)
                version = client.models.register(
                    "scorer", path=tmp_path / "model", flavor="sklearn"
                ).version
                client.models.approve("scorer", version, reason="test")
                client.endpoints.create("scoring", [{"model": "scorer", "version": version}])
                client.endpoints.wait("scoring")
                yield server.url, client
            finally:
                client.close()
    finally:
        runtime.close()
        _stop_replicas(tmp_path / "home")


def test_traffic_chart_moves_while_requests_are_sent(served: tuple[str, Client], page: Any) -> None:
    url, _ = served
    page.goto(url + "/#/endpoints/scoring")
    expect(page.locator("table.variants td").first).to_have_text("primary")
    expect(page.locator("table.variants")).to_contain_text("scorer v1")
    rate = page.locator("figure.chart:has(figcaption:text-is('Requests / s'))")
    expect(rate.locator("canvas")).to_be_visible()
    assert float(rate.get_attribute("data-ymax") or 0) == 0  # no traffic yet

    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                http.post(f"{url}/endpoints/scoring/invocations", json=[[0.1, 0.2, 0.3]])

    sender = threading.Thread(target=send)
    sender.start()
    try:
        expect(rate).not_to_have_attribute("data-ymax", "0", timeout=30_000)
    finally:
        stop.set()
        sender.join(30)
    assert float(rate.get_attribute("data-ymax") or 0) > 0
    assert int(page.locator("table.variants td.requests").inner_text()) > 0
