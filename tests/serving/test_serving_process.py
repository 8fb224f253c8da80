"""A real replica process: ``python -m modelyard.serving``, requests over HTTP, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import free_port


def start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"server-{len(list(tmp_path.glob('server-*')))}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard.serving", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, log


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server never became ready:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_replica_process_serves_and_stops_cleanly(  # type: ignore[no-untyped-def]
    sklearn_array_model, tmp_path: Path, workers: int
) -> None:
    folder, estimator, x = sklearn_array_model
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, log = start(
        [
            "--model-dir", str(folder), "--name", "clf", "--version", "2",
            "--port", str(port), "--workers", str(workers),
        ],
        tmp_path,
    )  # fmt: skip
    try:
        wait_ready(url, proc, log)
        rows = x[:4]
        r = httpx.post(f"{url}/invocations", json={"instances": rows.tolist()})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == estimator.predict(rows).tolist()
        assert r.headers["x-modelyard-model"] == "clf"
        assert r.headers["x-modelyard-model-version"] == "2"
        body: dict[str, Any] = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [4, 3],
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        r = httpx.post(f"{url}/v2/models/clf/versions/2/infer", json=body)
        assert r.json()["outputs"][0]["data"] == estimator.predict(rows).tolist()
        meta = httpx.get(f"{url}/v2/models/clf").json()
        assert meta["runtime"]["engine"] == "onnxruntime"
        r = httpx.post(f"{url}/invocations", content=b"1,2\n", headers={"content-type": "text/csv"})
        assert r.status_code == 422
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "engine onnxruntime: converted" in text  # the decision is logged


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc, log = start(["--model-dir", str(tmp_path / "missing"), "--name", "x"], tmp_path)
    assert proc.wait(timeout=60) == 2
    assert "is not a folder" in log.read_text()
    proc, log = start(["--name", "x"], tmp_path)
    assert proc.wait(timeout=60) == 2
    assert "--model-dir" in log.read_text()


def test_a_model_that_fails_to_load_answers_503_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "modelyard-model.json").write_text("{not json")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, log = start(["--model-dir", str(folder), "--name", "x", "--port", str(port)], tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{url}/ping", timeout=2)
                if r.json()["status"] == "failed":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert r.status_code == 503
        assert "modelyard-model.json" in r.json()["error"]
    finally:
        assert stop(proc) == 0


SNOOPING_HANDLER = """
import json, os

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    # what model code (and any subprocess it starts) can read of the replica's secret
    return {"env": sorted(k for k, v in os.environ.items() if "s3cret-value" in v)}

def output_fn(prediction, accept):
    return json.dumps(prediction)
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_model_code_never_sees_the_replica_secret(tmp_path: Path, workers: int) -> None:
    from modelyard.serving.settings import SECRET_ENV, SECRET_HEADER

    handler = tmp_path / "snoop.py"
    handler.write_text(SNOOPING_HANDLER)
    (tmp_path / "model").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "modelyard.serving", "--model-dir", str(tmp_path / "model"),
            "--handler", str(handler), "--name", "snoop", "--port", str(port),
            "--workers", str(workers),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", SECRET_ENV: "s3cret-value"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                ping = httpx.get(f"{url}/ping", headers={SECRET_HEADER: "s3cret-value"})
                if ping.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        r = httpx.post(f"{url}/invocations", json=[[1]], headers={SECRET_HEADER: "s3cret-value"})
        assert r.status_code == 200, r.text
        assert r.json() == {"env": []}  # neither SECRET_ENV nor inside the settings' JSON
        assert httpx.post(f"{url}/invocations", json=[[1]]).status_code == 403
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
