"""Fuzz every route with schemathesis against the server's own OpenAPI: never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.domains import operations
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from modelyard.server.app import create_app
from testkit import make_settings


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    home = tmp_path_factory.mktemp("fuzz")
    runtime = Runtime(make_settings(home, allowed_hosts=["testserver", "localhost"]))
    # Some real data, so generated names sometimes hit existing rows.
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
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(runtime))
    runtime.close()


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
