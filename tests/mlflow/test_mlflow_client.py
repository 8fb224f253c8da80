"""The real MLflow client against modelyard: autologging, the reverse direction, errors,
artifacts and auth. Every read-back goes through the other side's own API."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException, RestException

import mlflow
from mlflow import MlflowClient
from modelyard.client.sdk import Client, connect
from modelyard.client.transport import EmbeddedTransport
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings


@pytest.fixture
def modelyard(mlflow_url: str) -> Iterator[Client]:
    with connect(mlflow_url) as c:
        yield c


def _code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


# Two warnings MLflow's autologging itself causes, which warnings-as-errors would turn
# into autologging failures (MLflow then drops the training metrics): scikit-learn 1.9
# renamed a keyword MLflow still passes, and MLflow warns (in colour, hence the leading
# .*) about a type hint in its own sklearn flavor.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`y_pred` was renamed to `y_proba`:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_sklearn_autolog_is_read_back_with_the_modelyard_sdk(
    mlflow_url: str, modelyard: Client, tmp_path: Path
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    mlflow.sklearn.autolog(log_input_examples=False, silent=True)
    with mlflow.start_run() as active:
        LogisticRegression(max_iter=300, C=0.5).fit(x, y)
    run_id = active.info.run_id
    assert run_id.startswith("run-") and active.info.experiment_id == "0"

    run = modelyard.tracking.get_run(run_id)
    assert run.experiment == "Default" and run.status == "FINISHED"
    assert run.params["C"] == "0.5" and run.params["max_iter"] == "300"
    assert 0.9 < run.metrics["training_accuracy_score"].latest <= 1.0
    assert run.tags["estimator_name"] == "LogisticRegression"
    assert run.tags["mlflow.loggedModel.model.status"] == "LOGGED_MODEL_READY"

    listing = modelyard.tracking.list_artifacts(run_id, "model")
    files = {a.path for a in listing.artifacts}
    assert {"model/MLmodel", "model/model.pkl", "model/requirements.txt"} <= files
    local = modelyard.tracking.download_artifacts(run_id, "model", tmp_path / "dl")
    assert "sklearn" in (local / "MLmodel").read_text()
    # The model MLflow logged loads back through MLflow, from modelyard's store.
    loaded = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    assert (loaded.predict(x[:5]) == y[:5]).all()
    logged = MlflowClient().get_logged_model(f"m-{run_id}.model")
    assert logged.status.to_proto() == 2 and logged.source_run_id == run_id  # READY


def test_modelyard_run_read_through_mlflow(mlflow_url: str, modelyard: Client) -> None:
    with modelyard.tracking.start_run("churn", name="xgb-1", params={"depth": 6}) as run:
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("odd", math.nan)
        run.set_tag("team", "risk")
    got = mlflow.get_run(run.id)
    exp = modelyard.tracking.get_experiment("churn")
    assert got.info.run_id == run.id and got.info.experiment_id == exp.id
    assert got.info.status == "FINISHED" and got.info.run_name == "xgb-1"
    assert got.info.end_time >= got.info.start_time > 0
    assert got.data.params == {"depth": "6"}
    assert got.data.metrics["loss"] == pytest.approx(0.2)
    assert math.isnan(got.data.metrics["odd"])
    assert got.data.tags["team"] == "risk" and got.data.tags["mlflow.runName"] == "xgb-1"

    client = MlflowClient()
    history = client.get_metric_history(run.id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert client.get_experiment_by_name("churn").experiment_id == exp.id
    assert client.get_experiment(exp.id).name == "churn"

    with modelyard.tracking.start_run("churn", name="xgb-2", params={"depth": 3}) as second:
        second.log_metric("loss", 0.5)
    found = mlflow.search_runs(
        experiment_ids=[exp.id],
        filter_string="metrics.loss < 0.4 and params.depth = '6' and attributes.status = "
        "'FINISHED'",
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run.id]
    ordered = client.search_runs([exp.id], order_by=["metrics.loss DESC"], max_results=1)
    assert [r.info.run_id for r in ordered] == [second.id]
    assert ordered.token  # another page follows
    rest = client.search_runs(
        [exp.id], order_by=["metrics.loss DESC"], max_results=1, page_token=ordered.token
    )
    assert [r.info.run_id for r in rest] == [run.id] and not rest.token
    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp.id], filter_string="params.depth LIKE '6%'")
    assert _code(bad) == "INVALID_PARAMETER_VALUE"


def test_logging_rules_and_errors(mlflow_url: str, modelyard: Client) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("rules", tags={"owner": "ada"})
    with pytest.raises(MlflowException) as dup:
        client.create_experiment("rules")
    assert _code(dup) == "RESOURCE_ALREADY_EXISTS"
    mlflow.set_experiment("rules")
    with mlflow.start_run(run_name="batchy") as active:
        run_id = active.info.run_id
        mlflow.log_param("alpha", "0.1")
        mlflow.log_param("alpha", "0.1")  # the same value again is fine
        with pytest.raises(MlflowException) as changed:
            mlflow.log_param("alpha", "0.2")
        assert _code(changed) == "INVALID_PARAMETER_VALUE"
        mlflow.set_tag("stage", "dev")
        mlflow.set_tag("stage", "prod")  # tags may change
        client.log_batch(
            run_id,
            metrics=[Metric("m", float(i), 1_700_000_000_000 + i, i) for i in range(3)],
            params=[Param("beta", "2")],
            tags=[RunTag("k", "v")],
        )
        mlflow.log_metric("single", 3.5, step=7)
        mlflow.set_tag("mlflow.note.content", "tried a smaller alpha")
    run = modelyard.tracking.get_run(run_id)
    assert run.experiment == "rules" and run.name == "batchy"
    assert run.notes == "tried a smaller alpha"
    client.update_run(run_id, name="renamed")  # renaming is allowed after the end
    assert modelyard.tracking.get_run(run_id).name == "renamed"
    assert client.get_run(run_id).data.tags["mlflow.runName"] == "renamed"
    assert run.params == {"alpha": "0.1", "beta": "2"}
    assert run.tags["stage"] == "prod" and run.tags["k"] == "v"
    assert run.metrics["m"].latest == 2.0 and run.metrics["m"].count == 3
    assert (run.metrics["single"].latest, run.metrics["single"].step) == (3.5, 7)
    assert modelyard.tracking.get_experiment("rules").tags == {"owner": "ada"}
    assert exp_id == modelyard.tracking.get_experiment("rules").id

    for call in (
        lambda: client.get_run("run-doesnotexist"),
        lambda: client.log_param("run-doesnotexist", "a", "b"),
        lambda: client.get_experiment("exp-doesnotexist"),
        lambda: client.get_metric_history("run-doesnotexist", "m"),
    ):
        with pytest.raises(MlflowException) as missing:
            call()
        assert _code(missing) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_experiment_by_name("no-such-experiment") is None
    # An ended run takes no more data, and a bad batch changes nothing.
    with pytest.raises(MlflowException) as ended:
        client.log_metric(run_id, "late", 1.0)
    assert _code(ended) == "INVALID_PARAMETER_VALUE"
    before = modelyard.tracking.get_run(run_id)
    with pytest.raises(MlflowException):
        client.log_batch(run_id, params=[Param("bad key with spaces", "1")])
    assert modelyard.tracking.get_run(run_id).params == before.params
    # Unknown endpoints answer in MLflow's shape.
    response = httpx.post(f"{mlflow_url}/api/2.0/mlflow/runs/delete", json={"run_id": run_id})
    assert response.status_code == 404 and response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    response = httpx.post(f"{mlflow_url}/api/2.0/mlflow/runs/log-batch", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_artifacts_round_trip(mlflow_url: str, modelyard: Client, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "roc.txt").write_text("roc")
    (folder / "summary.json").write_text('{"auc": 0.9}')
    single = tmp_path / "notes.md"
    single.write_text("# notes")
    with mlflow.start_run() as active:
        run_id = active.info.run_id
        mlflow.log_artifact(str(single))
        mlflow.log_artifacts(str(folder), artifact_path="report")
        mlflow.log_text("hello", "texts/hello.txt")
    client = MlflowClient()
    root = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in root] == [
        ("notes.md", False),
        ("report", True),
        ("texts", True),
    ]
    report = client.list_artifacts(run_id, "report")
    assert [(f.path, f.is_dir, f.file_size) for f in report] == [
        ("report/plots", True, None),
        ("report/summary.json", False, 12),
    ]
    dest = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="report", dst_path=str(tmp_path / "dl")
    )
    assert (Path(dest) / "plots" / "roc.txt").read_text() == "roc"
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/texts/hello.txt")
    assert text == "hello"
    # The same files, seen by the modelyard SDK.
    assert [
        a.path for a in modelyard.tracking.list_artifacts(run_id, "report/plots").artifacts
    ] == ["report/plots/roc.txt"]
    # Artifact locations that are not a run's, or a run in another experiment, are refused.
    base = f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts"
    assert httpx.get(f"{base}/0/{run_id}/artifacts/missing.txt").status_code == 404
    assert httpx.get(f"{base}/exp-other/{run_id}/artifacts/notes.md").status_code == 404
    assert httpx.put(f"{base}/0/models/m-1/artifacts/x", content=b"x").status_code == 404
    escape = httpx.put(f"{base}/0/{run_id}/artifacts/a/%2e%2e/b", content=b"x")
    assert escape.status_code in (400, 404)
    assert httpx.get(base, params={"path": "0"}).json()["error_code"] == ("RESOURCE_DOES_NOT_EXIST")


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = Client(EmbeddedTransport(runtime, local_principal()))
    admin.users.create("ada", "scientist")
    admin.users.create("vic", "viewer")
    tokens = {"ada": admin.tokens.create("ada").token, "vic": admin.tokens.create("vic").token}
    with LiveServer(runtime) as server:
        yield server, tokens["ada"] + " " + tokens["vic"]
    runtime.close()


def test_auth(
    auth_server: tuple[LiveServer, str],
    mlflow_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, both = auth_server
    ada, vic = both.split()
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient(server.url)
    with pytest.raises(RestException) as anonymous:
        client.create_experiment("secured")
    assert _code(anonymous) == "UNAUTHENTICATED"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ada)
    exp_id = client.create_experiment("secured")
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "m", 1.0)
    notes = tmp_path / "a.txt"
    notes.write_text("a")
    client.log_artifact(run.info.run_id, str(notes))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", vic)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    with pytest.raises(RestException) as refused:
        client.log_metric(run.info.run_id, "m", 2.0)
    assert _code(refused) == "PERMISSION_DENIED"
    # Artifact routes fail as plain HTTP errors in MLflow's client, with MLflow's body.
    with pytest.raises(requests.HTTPError, match=r"403 .*PERMISSION_DENIED"):
        client.log_artifact(run.info.run_id, str(notes), "again")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    with pytest.raises(RestException) as anonymous_read:
        client.list_artifacts(run.info.run_id)
    assert _code(anonymous_read) == "UNAUTHENTICATED"
    location = f"{exp_id}/{run.info.run_id}/artifacts/a.txt"
    url = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{location}"
    denied = httpx.get(url)
    assert denied.status_code == 401 and denied.json()["error_code"] == "UNAUTHENTICATED"
    assert httpx.get(url, headers={"Authorization": f"Bearer {vic}"}).content == b"a"
    # The audit trail names the MLflow caller.
    admin = Client(EmbeddedTransport(server.runtime, local_principal()))
    events = admin.audit.list(actor="ada").events
    assert "tracking.log_artifact" in {e.operation for e in events}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_model_registry(mlflow_url: str, modelyard: Client, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    with mlflow.start_run() as active:
        mlflow.sklearn.log_model(
            LogisticRegression(max_iter=300).fit(x, y),
            name="model",
            pip_requirements=["scikit-learn"],  # skips MLflow's slow requirement inference
        )
    run_id = active.info.run_id
    client = MlflowClient()

    first = mlflow.register_model(f"runs:/{run_id}/model", "iris")
    assert (first.name, first.version, first.run_id) == ("iris", "1", run_id)
    assert first.tags["modelyard.status"] == "PendingManualApproval"
    second = mlflow.register_model(f"runs:/{run_id}/model", "iris")  # the group exists
    assert second.version == "2"
    assert client.get_registered_model("iris").name == "iris"
    found = client.search_registered_models(filter_string="name = 'iris'")
    assert [m.name for m in found] == ["iris"]
    versions = client.search_model_versions("name = 'iris'")
    assert sorted(v.version for v in versions) == ["1", "2"]

    # The version is a modelyard registry version holding the packed folder.
    version = modelyard.models.version("iris", 1)
    assert (version.flavor, version.source_run_id) == ("mlflow", run_id)
    assert version.status == "PendingManualApproval"
    files = modelyard.models.download("iris", 1, tmp_path / "registry")
    names = {p.name for p in files.iterdir()}
    assert "MLmodel" in names and any(n.startswith("model.") for n in names)
    # Both versions packed the same files: the same archive.
    assert modelyard.models.version("iris", 2).artifact_digest == version.artifact_digest

    client.set_registered_model_alias("iris", "champion", "1")
    assert client.get_model_version_by_alias("iris", "champion").version == "1"
    loaded = mlflow.sklearn.load_model("models:/iris@champion")
    assert (loaded.predict(x[:5]) == y[:5]).all()
    assert (mlflow.sklearn.load_model("models:/iris/2").predict(x[:3]) == y[:3]).all()
    # production needs an approved version, as everywhere in modelyard.
    with pytest.raises(MlflowException) as unapproved:
        client.set_registered_model_alias("iris", "production", "1")
    assert _code(unapproved) == "INVALID_PARAMETER_VALUE"
    modelyard.models.approve("iris", 1, reason="reviewed")
    client.set_registered_model_alias("iris", "production", "1")
    assert modelyard.models.get("iris").aliases == {"champion": 1, "production": 1}
    client.delete_registered_model_alias("iris", "champion")
    with pytest.raises(MlflowException) as gone:
        client.get_model_version_by_alias("iris", "champion")
    assert _code(gone) == "RESOURCE_DOES_NOT_EXIST"

    with pytest.raises(MlflowException) as dup:
        client.create_registered_model("iris")
    assert _code(dup) == "RESOURCE_ALREADY_EXISTS"
    for bad_source in ("s3://bucket/model", f"runs:/{run_id}/no-such-folder"):
        with pytest.raises(MlflowException):
            client.create_model_version("iris", bad_source, run_id)
    assert modelyard.models.get("iris").latest_version == 2  # nothing registered
    with pytest.raises(MlflowException) as missing:
        client.get_model_version("iris", "9")
    assert _code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_no_server_errors_for_odd_requests(mlflow_url: str, modelyard: Client) -> None:
    """Every MLflow route, with malformed and hostile input: 4xx in MLflow's shape."""
    from modelyard.mlflow_compat import logged_models, registry, tracking

    run = modelyard.tracking.create_run("odd")
    values: list[object] = [
        None,
        "",
        "0",
        run.id,
        "m-" + run.id + ".model",
        "../../etc",
        "x" * 5000,
        -1,
        2**70,
        1e308,
        [1, {"a": None}],
        {"key": "k"},
        "name = 'a' OR name = 'b'",
        "\x00",
    ]
    fields = [
        "run_id",
        "experiment_id",
        "experiment_ids",
        "name",
        "experiment_name",
        "key",
        "value",
        "metrics",
        "params",
        "tags",
        "filter",
        "order_by",
        "page_token",
        "max_results",
        "status",
        "source",
        "version",
        "alias",
        "metric_key",
        "path",
    ]
    routes = [*tracking.ROUTES, *logged_models.ROUTES, *registry.ROUTES]
    with httpx.Client(base_url=mlflow_url, timeout=30) as http:
        for method, path, _ in routes:
            path = path.replace("{model_id}", "m-" + run.id + ".model")
            for i, value in enumerate(values):
                body = {f: value for f in fields[i % 3 :: 3]}
                url = f"/api/2.0/mlflow/{path}"
                if method == "GET":
                    params = {k: str(v) for k, v in body.items()}
                    response = http.get(url, params=params)
                else:
                    response = http.request(method, url, json=body)
                assert response.status_code < 500, (method, path, body, response.text)
                if response.status_code >= 400:
                    assert "error_code" in response.json(), (method, path, response.text)
        for location in ("", "0", f"0/{run.id}", f"0/{run.id}/artifacts/%00", "a/b/c/d/e"):
            for method in ("GET", "PUT"):
                response = http.request(
                    method, f"/api/2.0/mlflow-artifacts/artifacts/{location}", content=b"x"
                )
                assert response.status_code < 500, (method, location, response.text)


def test_artifact_uploads_get_the_upload_size_limit(tmp_path: Path) -> None:
    """The MLflow upload route gets the server's upload limit, not the 32 MiB JSON limit."""
    mib = 1024 * 1024
    runtime = Runtime(make_settings(tmp_path, max_upload_bytes=40 * mib))
    sdk = Client(EmbeddedTransport(runtime, local_principal()))
    run = sdk.tracking.create_run("limits")
    exp_id = sdk.tracking.get_experiment("limits").id
    with LiveServer(runtime) as server:
        base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run.id}/artifacts"
        ok = httpx.put(f"{base}/weights.bin", content=b"w" * (33 * mib), timeout=60)
        assert ok.status_code == 200, ok.text
        big = httpx.put(f"{base}/big.bin", content=b"b" * (41 * mib), timeout=60)
        assert big.status_code == 413
    listed = sdk.tracking.list_artifacts(run.id).artifacts
    assert [(a.path, a.size) for a in listed] == [("weights.bin", 33 * mib)]
    runtime.close()
