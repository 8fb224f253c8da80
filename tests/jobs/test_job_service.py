"""Bad submissions are refused with a 4xx that names the problem, on both transports and
on the raw HTTP API; nothing is written for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from jobkit import live_server, source  # noqa: F401 (live_server: a fixture)

import modelyard as my
from modelyard.client.sdk import Client
from modelyard.errors import InvalidInput, NotFound, PermissionDenied
from modelyard.jobs.builtins import known_algorithms
from testkit import LiveServer


def _code(client: Client, tmp_path: Path) -> dict[str, Any]:
    entry, digest = client.jobs.upload_source("train.py", source(tmp_path, "print(1)\n"))
    return {"entry_point": entry, "source_digest": digest}


def test_submissions_refused_by_the_service(client: Client, tmp_path: Path) -> None:
    code = _code(client, tmp_path)
    client.datasets.register("known", pa.table({"x": [1]}), profile=False)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({}, InvalidInput, "needs entry_point and source_digest"),
        ({**code, "algorithm": "xgboost"}, InvalidInput, "not both"),
        ({"algorithm": "no_such_algo"}, InvalidInput, "known algorithms: "),
        ({**code, "entry_point": "other.py"}, InvalidInput, "not a file in the source"),
        ({**code, "entry_point": "train.txt"}, InvalidInput, r"\.py\) or shell"),
        ({**code, "source_digest": "f" * 64}, InvalidInput, "never uploaded"),
        ({**code, "inputs": [{"name": "t", "dataset": "nope"}]}, NotFound, "'nope' does not exist"),
        (
            {**code, "inputs": [{"name": "t", "dataset": "known", "version": 9}]},
            NotFound,
            "no version 9",
        ),
        ({**code, "inputs": [{"name": "t", "artifact": "e" * 64}]}, InvalidInput, "never uploaded"),
        (
            {
                **code,
                "inputs": [{"name": "t", "dataset": "known"}, {"name": "T", "dataset": "known"}],
            },
            InvalidInput,
            "unique",
        ),
        ({**code, "backend": "kubernetes"}, InvalidInput, "use one of: local"),
        ({**code, "backend": "local://x"}, InvalidInput, "takes no address"),
        ({**code, "resources": {"instance_count": 2}}, InvalidInput, "runs one instance"),
        ({**code, "resources": {"cpus": 1000}}, InvalidInput, "this machine has"),
    ]
    for fields, error, message in cases:
        with pytest.raises(error, match=message):
            client.jobs.submit(fields)
    assert client.jobs.list().total == 0
    assert "xgboost" in known_algorithms()
    with pytest.raises(NotFound, match="does not exist"):
        client.jobs.get("job-" + "0" * 26)


def test_schema_rejects_bad_fields_over_http(live_server: LiveServer, tmp_path: Path) -> None:  # noqa: F811
    with my.connect(live_server.url) as client:
        code = _code(client, tmp_path)
    bad: list[dict[str, Any]] = [
        {**code, "hyperparameters": {"bad name!": 1}},
        {**code, "hyperparameters": {"x": [1, 2]}},
        {**code, "environment": {"SM_MODEL_DIR": "/tmp"}},
        {**code, "environment": {"MODELYARD_TOKEN": "x"}},
        {**code, "arguments": ["nul\u0000byte"]},
        {**code, "metric_definitions": [{"name": "loss", "regex": "no group"}]},
        {**code, "metric_definitions": [{"name": "loss", "regex": "(unclosed"}]},
        {**code, "inputs": [{"name": "t"}]},
        {**code, "inputs": [{"name": "t", "artifact": "a" * 64, "dataset": "d"}]},
        {**code, "inputs": [{"name": "bad/name", "dataset": "d"}]},
        {**code, "resources": {"cpus": 0}},
        {**code, "max_runtime_s": 0},
        {**code, "retry": {"max_attempts": 100}},
        {**code, "entry_point": "../escape.py"},
        {**code, "kind": "tuning"},
    ]
    with httpx.Client(base_url=live_server.url + "/api/v1") as http:
        for body in bad:
            response = http.post("/jobs", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["code"] == "invalid_input"
        assert http.get("/jobs/not-a-job-id").status_code == 400
        assert http.get("/jobs", params={"state": "Exploded"}).status_code == 400
        assert http.get("/jobs", params={"limit": 0}).status_code == 400
        missing = http.post(f"/jobs/job-{'0' * 26}/stop")
        assert missing.status_code == 404
        nan = http.post(
            f"/jobs/job-{'0' * 26}/metrics",
            content=b'{"metrics": [{"name": "x", "value": NaN}]}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 400
        assert http.get("/jobs").json()["total"] == 0


def test_a_viewer_may_read_but_not_submit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with my.connect(home=home) as admin:
        admin.users.create("vera", "viewer")
        token = admin.tokens.create(user="vera").token
        code = _code(admin, tmp_path)
    with my.connect(home=home, token=token) as viewer:
        with pytest.raises(PermissionDenied, match=r"jobs\.write"):
            viewer.jobs.submit(code)
        assert viewer.jobs.list().total == 0
