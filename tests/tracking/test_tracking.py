"""Tracking: experiments, runs, params, batched metrics, history, search, compare."""

from __future__ import annotations

import math

import pytest

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from modelyard.tracking.schemas import Point


def _pts(client: Client, run_id: str, key: str, max_points: int | None = None) -> list[Point]:
    return client.tracking.metric_history(run_id, key, max_points=max_points).points


def test_experiments_and_run_lifecycle(client: Client) -> None:
    exp = client.tracking.create_experiment("churn", tags={"team": "risk"})
    assert exp.name == "churn" and exp.tags == {"team": "risk"}
    with pytest.raises(AlreadyExists, match="experiment 'churn' already exists"):
        client.tracking.create_experiment("churn")
    run = client.tracking.create_run("churn", name="first", params={"depth": 6}, tags={"a": "b"})
    assert run.status == "RUNNING" and run.params == {"depth": "6"} and run.tags == {"a": "b"}
    client.tracking.create_run("auto-created")
    assert [e.name for e in client.tracking.list_experiments().experiments] == [
        "auto-created",
        "churn",
    ]
    ended = client.tracking.end_run(run.id, "FINISHED")
    assert ended.status == "FINISHED" and ended.end_time is not None
    assert client.tracking.end_run(run.id, "FINISHED").status == "FINISHED"  # idempotent
    with pytest.raises(Conflict):
        client.tracking.end_run(run.id, "FAILED")
    with pytest.raises(NotFound):
        client.tracking.get_run("run-nope")


def test_params_are_immutable(client: Client) -> None:
    run = client.tracking.create_run("p", params={"lr": 0.1})
    client.tracking.log_batch(run.id, params={"lr": 0.1, "depth": 3})  # same value: fine
    with pytest.raises(Conflict, match="lr"):
        client.tracking.log_batch(run.id, params={"lr": 0.2})
    assert client.tracking.get_run(run.id).params == {"depth": "3", "lr": "0.1"}


def test_batch_is_all_or_nothing(client: Client) -> None:
    run = client.tracking.create_run("b", params={"lr": 0.1})
    good = [{"key": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(100)]
    with pytest.raises(InvalidInput):
        client.tracking.log_batch(
            run.id, metrics=[*good, {"key": "bad key!", "value": 1.0, "step": 0}]
        )
    with pytest.raises(InvalidInput):
        client.tracking.log_batch(
            run.id, metrics=[*good, {"key": "loss", "value": 1.0, "step": -(2**60)}]
        )
    # A conflicting param in the same batch also writes none of the points.
    with pytest.raises(Conflict):
        client.tracking.log_batch(run.id, metrics=good, params={"lr": 0.5})
    assert client.tracking.metric_history(run.id, "loss").total == 0
    assert client.tracking.get_run(run.id).metrics == {}
    logged = client.tracking.log_batch(run.id, metrics=good, tags={"t": "1"})
    assert logged.metrics == 100
    assert client.tracking.metric_history(run.id, "loss").total == 100


def test_nan_inf_and_summary(client: Client) -> None:
    run = client.tracking.create_run("n")
    client.tracking.log_batch(
        run.id,
        metrics=[
            {"key": "m", "value": 3.0, "step": 0},
            {"key": "m", "value": float("nan"), "step": 1},
            {"key": "m", "value": float("inf"), "step": 2},
            {"key": "m", "value": -1.0, "step": 3},
            {"key": "m", "value": float("-inf"), "step": 4},
        ],
    )
    values = [p.value for p in _pts(client, run.id, "m")]
    assert values[0] == 3.0 and math.isnan(values[1]) and values[2] == math.inf
    assert values[3] == -1.0 and values[4] == -math.inf
    s = client.tracking.get_run(run.id).metrics["m"]
    assert (s.latest, s.step, s.min, s.max, s.count) == (-math.inf, 4, -math.inf, math.inf, 5)
    client.tracking.log_batch(run.id, metrics=[{"key": "m", "value": float("nan"), "step": 9}])
    s = client.tracking.get_run(run.id).metrics["m"]
    assert math.isnan(s.latest) and s.step == 9 and s.count == 6


def test_downsampling_keeps_first_last_min_max(client: Client) -> None:
    run = client.tracking.create_run("d")
    values = [math.sin(i / 50) for i in range(5000)]
    values[1234] = -10.0
    values[3777] = 10.0
    client.tracking.log_batch(
        run.id, metrics=[{"key": "x", "value": v, "step": i} for i, v in enumerate(values)]
    )
    hist = client.tracking.metric_history(run.id, "x", max_points=50)
    steps = [p.step for p in hist.points]
    assert hist.total == 5000 and len(steps) <= 50 and len(steps) >= 45
    assert {0, 4999, 1234, 3777} <= set(steps) and steps == sorted(steps)
    assert len(_pts(client, run.id, "x", max_points=10_000)) == 5000
    with pytest.raises(InvalidInput):
        client.tracking.metric_history(run.id, "x", max_points=2)


def test_search_every_operator_and_kind(client: Client) -> None:
    runs = []
    for i in range(5):
        r = client.tracking.create_run(
            "s", name=f"r{i}", params={"depth": i}, tags={"team": "a" if i % 2 else "b"}
        )
        client.tracking.log_batch(
            r.id,
            metrics=[
                {"key": "auc", "value": 0.5 + i / 10, "step": 0},
                {"key": "auc", "value": 0.1 * i, "step": 1},  # latest
                {"key": "val.loss", "value": 1.0 - i / 10, "step": 0},
            ],
        )
        runs.append(r)
    client.tracking.end_run(runs[4].id, "FINISHED")
    client.tracking.create_run("other", params={"depth": 1})

    def names(flt: str, order_by: str = "attributes.name") -> list[str]:
        return [r.name for r in client.tracking.search_runs("s", flt, order_by=order_by).runs]

    assert names("metrics.auc > 0.25") == ["r3", "r4"]
    assert names("metrics.auc >= 0.3") == ["r3", "r4"]
    assert names("metrics.auc < 0.1") == ["r0"]
    assert names("metrics.auc <= 0.1") == ["r0", "r1"]
    assert names("metrics.auc.max = 0.9") == ["r4"]
    assert names("metrics.auc.min != 0") == ["r1", "r2", "r3", "r4"]
    assert names("metrics.`val.loss` < 0.75") == ["r3", "r4"]
    assert names('params.depth = "2"') == ["r2"]
    assert names('params.depth != "2" and tags.team = "a"') == ["r1", "r3"]
    assert names('attributes.status = "FINISHED"') == ["r4"]
    assert names('metrics.auc > 0.05 and tags.team = "b" and params.depth >= "2"') == [
        "r2",
        "r4",
    ]
    assert names("", order_by="metrics.auc.max desc")[:2] == ["r4", "r3"]
    page = client.tracking.search_runs("s", "", order_by="metrics.auc asc", limit=2, offset=1)
    assert [r.name for r in page.runs] == ["r1", "r2"] and page.total == 5
    assert client.tracking.search_runs(filter='params.depth = "1"').total == 2
    top = client.tracking.search_runs("s", "metrics.auc > 0.35").runs[0]
    assert top.metrics["auc"].latest == pytest.approx(0.4) and top.params == {"depth": "4"}


def test_search_parse_errors_name_the_position(client: Client) -> None:
    with pytest.raises(InvalidInput, match="position 13"):
        client.tracking.search_runs(filter="metrics.auc >> 1")
    with pytest.raises(InvalidInput, match="position 0"):
        client.tracking.search_runs(filter="bogus.x = 1")
    with pytest.raises(InvalidInput, match="'and'"):
        client.tracking.search_runs(filter="metrics.a > 1 or metrics.b > 2")
    with pytest.raises(InvalidInput, match="quoted string"):
        client.tracking.search_runs(filter="params.depth = 6")
    with pytest.raises(InvalidInput, match="number"):
        client.tracking.search_runs(filter='metrics.auc > "x"')
    with pytest.raises(InvalidInput, match="unterminated"):
        client.tracking.search_runs(filter='tags.t = "x')
    with pytest.raises(InvalidInput):
        client.tracking.search_runs(order_by="metrics.auc sideways")
    # Values are bound parameters, never SQL.
    assert client.tracking.search_runs(filter='tags.t = "x\' OR 1=1 --"').total == 0


def test_compare(client: Client) -> None:
    a = client.tracking.create_run("c", params={"lr": 0.1, "depth": 3})
    b = client.tracking.create_run("c", params={"lr": 0.2, "depth": 3})
    for r in (a, b):
        client.tracking.log_batch(
            r.id, metrics=[{"key": "loss", "value": 1 / (i + 1), "step": i} for i in range(1000)]
        )
    cmp = client.tracking.compare([a.id, b.id], ["loss"], max_points=20)
    assert [r.id for r in cmp.runs] == [a.id, b.id]
    assert cmp.param_keys == ["depth", "lr"] and cmp.differing_params == ["lr"]
    for run_id in (a.id, b.id):
        points = cmp.histories["loss"][run_id]
        assert len(points) <= 20 and points[0].step == 0 and points[-1].step == 999
    with pytest.raises(NotFound):
        client.tracking.compare([a.id, "run-missing"])


def test_buffered_run_logs_every_point(client: Client) -> None:
    with client.tracking.start_run("buf", name="loop", params={"k": 1}) as run:
        for i in range(10_000):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
        run.log_metrics({"acc": 0.5, "f1": 0.4}, step=1)
        run.log_param("extra", "x")
        run.set_tag("stage", "dev")
        with pytest.raises(Conflict):
            run.log_param("k", 2)
    assert run.pending == 0
    hist = client.tracking.metric_history(run.id, "loss")
    assert hist.total == 10_000 and [p.step for p in hist.points] == list(range(10_000))
    got = client.tracking.get_run(run.id)
    assert got.status == "FINISHED" and got.params == {"extra": "x", "k": "1"}
    assert got.tags == {"stage": "dev"} and got.metrics["f1"].latest == 0.4


def test_full_buffer_is_sent_in_the_background_and_memory_stays_bounded(client: Client) -> None:
    import time

    with client.tracking.start_run("bound", buffer_size=100, flush_interval=3600) as run:
        for i in range(250):
            run.log_metric("m", float(i), step=i)
            assert run.pending < 200  # one buffer being sent, one filling
        # Full buffers go without waiting for the timer (an hour here); the rest stays.
        deadline = time.monotonic() + 20
        while run.pending > 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.pending == 50
        assert client.tracking.metric_history(run.id, "m").total == 200
        run.flush()
        assert run.pending == 0
        assert client.tracking.metric_history(run.id, "m").total == 250
    assert [p.step for p in client.tracking.metric_history(run.id, "m").points] == list(range(250))


def test_flush_error_is_surfaced(client: Client) -> None:
    run = client.tracking.start_run("err", flush_interval=3600)
    run.log_metric("m", 1.0)
    client.tracking.end_run(run.id, "KILLED")  # ended elsewhere
    with pytest.raises(Conflict, match="KILLED"):
        run.flush()
    assert run.pending == 1  # kept, not dropped
    with pytest.raises(Conflict):
        run.end()


def test_background_flush_error_raised_on_next_log(client: Client) -> None:
    import time

    run = client.tracking.start_run("bg", flush_interval=0.05)
    run.log_metric("m", 1.0)
    deadline = time.monotonic() + 10
    while run.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.tracking.metric_history(run.id, "m").total == 1  # background flush
    client.tracking.end_run(run.id, "KILLED")
    run.log_metric("m", 2.0)
    deadline = time.monotonic() + 10
    while run._error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(Conflict):
        run.log_metric("m", 3.0)
    with pytest.raises(Conflict):
        run.end()


def test_failed_with_body_marks_run_failed(client: Client) -> None:
    with pytest.raises(RuntimeError, match="boom"), client.tracking.start_run("fail") as run:
        run.log_metric("m", 1.0)
        raise RuntimeError("boom")
    got = client.tracking.get_run(run.id)
    assert got.status == "FAILED" and got.metrics["m"].count == 1


def test_storage_on_both_databases(runtime: Runtime) -> None:
    c = Client(EmbeddedTransport(runtime, local_principal()))
    run = c.tracking.create_run("db", params={"p": "x" * 6000})
    c.tracking.log_batch(
        run.id,
        metrics=[
            {"key": "m", "value": float(v), "step": i}
            for i, v in enumerate([1, float("nan"), float("inf"), -5, 2])
        ]
        * 2000,
    )
    s = c.tracking.get_run(run.id).metrics["m"]
    assert (s.count, s.min, s.max, s.latest) == (10_000, -5.0, math.inf, 2.0)
    assert c.tracking.search_runs("db", "metrics.m.min < -4 and metrics.m > 1").total == 1
    assert c.tracking.search_runs("db", "metrics.m.max > 1e308").total == 1
    hist = c.tracking.metric_history(run.id, "m", max_points=10)
    assert len(hist.points) <= 10 and hist.total == 10_000
    with pytest.raises(Conflict):
        c.tracking.log_batch(run.id, params={"p": "y"})


def test_cli_experiments_and_runs() -> None:
    import json

    from typer.testing import CliRunner

    import modelyard as my
    from modelyard.cli.main import app

    with my.connect() as c, c.tracking.start_run("cli-exp", name="r1", params={"d": 3}) as run:
        run.log_metric("auc", 0.93)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "cli-exp" in cli("experiments", "list")
    listed = json.loads(
        cli("--json", "runs", "list", "-e", "cli-exp", "--filter", "metrics.auc > 0.9")
    )
    assert [r["id"] for r in listed["runs"]] == [run.id]
    assert "auc" in cli("runs", "list", "--experiment", "cli-exp")
    shown = cli("runs", "show", run.id)
    assert run.id in shown and "FINISHED" in shown and "0.93" in shown
    bad = runner.invoke(app, ["runs", "list", "--filter", "metrics.auc >"])
    assert bad.exit_code == 1 and "position" in bad.output
