"""Fuzz every route, never a 5xx: the native API with schemathesis against the server's
own OpenAPI, the MLflow API (not in that document) with hypothesis over its route list
and the fields of its request messages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from starlette.testclient import TestClient

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.domains import operations
from modelyard.mlflow_compat import schemas as mlflow_schemas
from modelyard.mlflow_compat.router import ARTIFACT_PREFIXES, PREFIXES, mlflow_router
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from modelyard.server.app import create_app
from modelyard.server.jsonbody import MAX_DEPTH
from testkit import make_settings


@pytest.fixture(scope="module")
def fuzz_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, str]]:
    """A runtime with some real data, so generated names sometimes hit existing rows;
    with the id of its run."""
    home = tmp_path_factory.mktemp("fuzz")
    runtime = Runtime(make_settings(home, allowed_hosts=["testserver", "localhost"]))
    sdk = Client(EmbeddedTransport(runtime, local_principal()))
    sdk.datasets.register("a", pa.table({"x": [1.0, 2.0, None], "s": ["p", "q", "p"]}))
    sdk.users.create("a", "viewer")
    run = sdk.tracking.create_run("a", params={"a": "1"})
    sdk.tracking.log_batch(run.id, metrics=[{"key": "a", "value": 1.0, "step": 0}])
    model = sdk.artifacts.upload(b"model").digest
    sdk.models.register("a", artifact=model, flavor="sklearn", run_id=run.id)
    sdk.models.register("a", artifact=model, flavor="sklearn")
    sdk.models.approve("a", 1)
    sdk.models.set_alias("a", "production", 1)
    yield runtime, run.id
    runtime.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_runtime: tuple[Runtime, str]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_runtime[0]))


@pytest.mark.timeout(1200)  # one test over every operation (~70): minutes, not seconds
def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    """Up to 40 generated requests per operation, conforming to the schema and not."""
    failures: list[str] = []
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()

        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call()
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        fuzz()
        checked += 1
    assert checked >= len(operations())  # every declared operation was exercised
    assert failures == []


# --- the MLflow API ---------------------------------------------------------------------

_MESSAGES = [
    cls
    for cls in vars(mlflow_schemas).values()
    if isinstance(cls, type) and issubclass(cls, mlflow_schemas.Message)
]
JSON = {"content-type": "application/json"}
FIELDS = sorted({name for cls in _MESSAGES for name in cls.model_fields})


# Around the limit, and past the interpreter's recursion limit (where json.loads raised
# RecursionError, not ValueError).
DEPTHS = st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1000, 10_000])


def _deep(levels: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * levels + "1" + closer * levels


def _mlflow_routes(runtime: Runtime) -> list[tuple[str, str]]:
    """(method, path) of every MLflow route, under one prefix each (the others are the
    same endpoints), without the catch-all that answers unsupported paths."""
    prefixes = (PREFIXES[0], ARTIFACT_PREFIXES[0])
    found = {
        (method, route.path)
        for route in mlflow_router(runtime).routes
        if isinstance(route, APIRoute) and route.path.startswith(prefixes)
        if "{rest:path}" not in route.path
        for method in route.methods
    }
    return sorted(found)


def test_mlflow_routes_refuse_deeply_nested_json_with_400(
    fuzz_runtime: tuple[Runtime, str],
) -> None:
    """A body nested 1,000 deep raised RecursionError (a 500); now MLflow's 400."""
    runtime, _ = fuzz_runtime
    client = TestClient(create_app(runtime))
    posts = [(m, p) for m, p in _mlflow_routes(runtime) if m in ("POST", "PATCH", "DELETE")]
    wanted = ("experiments/create", "runs/log-batch", "model-versions/create")
    assert {f"{PREFIXES[0]}/{p}" for p in wanted} <= {p for _, p in posts}
    for method, path in posts:
        for body in (_deep(1000, "["), '{"name": ' + _deep(1000, '{"a":') + "}"):
            response = client.request(method, path.replace("{model_id}", "m-1"), content=body)
            assert response.status_code == 400, (path, response.text[:300])
            assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
            assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["message"]


def test_native_routes_refuse_deeply_nested_json_with_400(
    fuzz_runtime: tuple[Runtime, str],
) -> None:
    """The same limit, the same parser: nested JSON is a 400 naming the limit."""
    client = TestClient(create_app(fuzz_runtime[0]))
    for levels in (MAX_DEPTH + 1, 1000, 100_000):
        body = '{"name": "x", "tags": ' + _deep(levels, '{"a":') + "}"
        response = client.post("/api/v1/experiments", content=body, headers=JSON)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["code"] == "invalid_input"
        assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["message"]
    # Within the limit the body is read as usual (and validated by the operation).
    ok = client.post(
        "/api/v1/experiments", content='{"name": "ok", "tags": {"a": "b"}}', headers=JSON
    )
    assert ok.status_code == 200, ok.text


def _json_text(run_id: str) -> st.SearchStrategy[str]:
    """JSON text for one field's value: plausible ones, the wrong types, deep nesting."""
    known = st.sampled_from([run_id, "0", "1", "a", "production", "m-" + run_id, "FINISHED"])
    leaf = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False)
        | st.text(max_size=30)
        | known
    )
    value = st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    deep = st.builds(_deep, DEPTHS, st.sampled_from(["[", '{"a":']))
    return value.map(json.dumps) | deep


def _fuzz_route(client: TestClient, method: str, template: str, run_id: str) -> list[str]:
    """Up to 30 generated requests to one MLflow route; the 5xx answers, described."""
    failures: list[str] = []
    params = re.findall(r"{([a-z_]+)(?::path)?}", template)
    query_value = st.text(max_size=30) | st.sampled_from([run_id, "0", "1", "a", "production"])

    @given(
        path_values=st.lists(
            st.sampled_from([f"0/{run_id}/artifacts/x", "m-" + run_id, "1"])
            | st.text(max_size=20).map(lambda t: quote(t, safe="")),
            min_size=len(params),
            max_size=len(params),
        ),
        body=st.dictionaries(st.sampled_from(FIELDS), _json_text(run_id), max_size=6)
        | st.builds(_deep, DEPTHS, st.just("[")).map(lambda t: {"": t}),
        query=st.dictionaries(st.sampled_from(FIELDS), query_value, max_size=5),
    )
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(path_values: list[str], body: dict[str, str], query: dict[str, str]) -> None:
        path = template
        for name, value in zip(params, path_values, strict=True):
            path = re.sub(r"{" + name + r"(?::path)?}", value or "x", path)
        kwargs: dict[str, Any] = {}
        if method == "GET":
            kwargs["params"] = query
        elif method == "PUT":
            kwargs["content"] = b"content"
        elif "" in body:  # a bare deep array instead of an object
            kwargs["content"] = body[""]
        else:
            text = ", ".join(f"{json.dumps(k)}: {v}" for k, v in body.items())
            kwargs["content"] = "{" + text + "}"
        response = client.request(method, path, **kwargs)
        if response.status_code >= 500:
            failures.append(f"{method} {path} -> {response.status_code}: {response.text[:300]}")

    fuzz()
    return failures


@pytest.mark.timeout(600)
def test_mlflow_routes_no_server_errors(fuzz_runtime: tuple[Runtime, str]) -> None:
    """Every MLflow route: bodies (or query strings) made of the fields of MLflow's request
    messages, with values of any JSON shape and depth, and path values of any text."""
    runtime, run_id = fuzz_runtime
    client = TestClient(create_app(runtime))
    routes = _mlflow_routes(runtime)
    assert len(routes) >= 30
    failures = [f for method, path in routes for f in _fuzz_route(client, method, path, run_id)]
    assert failures == []
