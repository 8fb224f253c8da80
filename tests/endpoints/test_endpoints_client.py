"""``client.endpoints.predict`` and ``modelyard endpoints invoke``: the bodies they send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client.endpoints import EndpointsAPI
from modelyard.client.transport import RemoteTransport
from modelyard.errors import InvalidInput

ROWS = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]


class SageMakerStyleReplica:
    """A router answering as a replica running a SageMaker-standard handler does: its
    ``input_fn`` reads ``json.loads(body)["instances"]`` (a bare list is a TypeError)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        headers = {"x-modelyard-variant": "primary", "x-modelyard-model-version": "churn:1"}
        try:
            rows = body["instances"]
        except TypeError as exc:
            error = {"error": f"input_fn refused the request: {exc}", "code": "invalid_input"}
            return httpx.Response(400, json=error, headers=headers)
        return httpx.Response(200, json={"predictions": [len(r) for r in rows]}, headers=headers)


@pytest.fixture
def replica() -> SageMakerStyleReplica:
    return SageMakerStyleReplica()


@pytest.fixture
def endpoints(replica: SageMakerStyleReplica) -> Iterator[EndpointsAPI]:
    transport = RemoteTransport("http://modelyard.test")
    transport.http = httpx.Client(
        base_url="http://modelyard.test", transport=httpx.MockTransport(replica)
    )
    yield EndpointsAPI(transport)
    transport.http.close()


def test_predict_sends_instances_by_default(
    endpoints: EndpointsAPI, replica: SageMakerStyleReplica
) -> None:
    assert endpoints.predict("churn", ROWS) == {"predictions": [4, 4]}
    frame = pd.DataFrame(ROWS, columns=["a", "b", "c", "d"])
    assert endpoints.predict("churn", frame) == {"predictions": [4, 4]}
    assert replica.bodies == [
        {"instances": ROWS},
        {"instances": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, {"a": 5, "b": 6, "c": 7, "d": 8}]},
    ]


def test_predict_sends_a_bare_list_when_asked_and_refuses_an_unknown_format(
    endpoints: EndpointsAPI, replica: SageMakerStyleReplica
) -> None:
    with pytest.raises(InvalidInput, match="input_fn refused"):
        endpoints.predict("churn", ROWS, body_format="list")
    assert replica.bodies == [ROWS]
    with pytest.raises(InvalidInput, match="'csv' is not one of instances, list"):
        endpoints.predict("churn", ROWS, body_format="csv")
    assert len(replica.bodies) == 1  # nothing sent


def test_cli_invoke_wraps_a_json_list_and_prints_the_status_on_a_line_of_its_own(
    monkeypatch: pytest.MonkeyPatch, replica: SageMakerStyleReplica
) -> None:
    real = httpx.Client

    def mocked(*args: Any, **kwargs: Any) -> httpx.Client:
        return real(*args, **{**kwargs, "transport": httpx.MockTransport(replica)})

    monkeypatch.setattr(httpx, "Client", mocked)
    runner = CliRunner()
    url = ["--url", "http://modelyard.test", "endpoints", "invoke", "churn"]
    result = runner.invoke(app, [*url, "--data", json.dumps(ROWS)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"predictions": [4, 4]}  # the body alone on stdout
    assert result.stderr == "# 200 variant=primary model_version=churn:1\n"
    assert result.output.splitlines()[-1].startswith("# 200 ")
    # An object is sent as it is; --body-format raw sends a list as it is.
    assert runner.invoke(app, [*url, "--data", '{"instances": [[1]]}']).exit_code == 0
    raw = runner.invoke(app, [*url, "--data", "[[1, 2]]", "--body-format", "raw"])
    assert raw.exit_code == 1 and "input_fn refused" in raw.stdout
    assert replica.bodies == [{"instances": ROWS}, {"instances": [[1]]}, [[1, 2]]]
    bad = runner.invoke(app, [*url, "--data", "[]", "--body-format", "xml"])
    assert bad.exit_code == 1 and "'xml' is not one of instances, raw" in bad.output
