"""MLflow's own client against damaged and hostile artifacts (server/headers.py rules)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import mlflow
from testkit import LiveServer


def _damage(server: LiveServer, digest: str, data: bytes) -> None:
    location = server.runtime.artifacts.object_location(digest)
    os.chmod(location, 0o644)
    Path(location).write_bytes(data)


def test_the_mlflow_client_never_stores_the_bytes_of_a_damaged_artifact(
    mlflow_url: str, live_server: LiveServer, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    local = tmp_path / "weights.bin"
    local.write_bytes(data)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(local))
    [entry] = MlflowClient().list_artifacts(run.info.run_id)
    listing = httpx.get(
        f"{mlflow_url}/api/v1/runs/{run.info.run_id}/artifacts", params={"path": ""}
    ).json()
    digest = listing["artifacts"][0]["digest"]
    _damage(live_server, digest, data[:-1] + bytes([data[-1] ^ 1]))
    dest = tmp_path / "dl"
    dest.mkdir()
    with pytest.raises(MlflowException) as caught:
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=entry.path, dst_path=str(dest)
        )
    assert "weights.bin" in str(caught.value)
    assert list(dest.rglob("*")) == []  # nothing written, wrong bytes least of all


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("evil.html", b"<script>fetch('/api/2.0/mlflow/experiments/create')</script>"),
        ("evil.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ],
)
def test_hostile_artifacts_come_back_as_sandboxed_attachments(
    mlflow_url: str, tmp_path: Path, name: str, body: bytes
) -> None:
    local = tmp_path / name
    local.write_bytes(body)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(local))
    exp = run.info.experiment_id
    response = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run.info.run_id}/artifacts/{name}"
    )
    assert response.status_code == 200 and response.content == body
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp
    # MLflow's own client still reads it back byte for byte.
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{name}")
    assert text.encode() == body
