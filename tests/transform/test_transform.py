"""Batch transform end to end: predictions, joins and filters, the output dataset version
and its lineage, failed records, sharding across workers, and refused requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from transformkit import (  # noqa: F401 (live_server: a fixture)
    FEATURES,
    features,
    fitted_model,
    live_server,
    register_model,
    table,
)

import modelyard as my
from modelyard.client.sdk import Client, connect
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.jobs.schemas import JobFailed
from modelyard.transform.schemas import Transform


def _expected(data: pa.Table) -> list[int]:
    matrix = np.column_stack([data[name].to_numpy() for name in FEATURES])
    return [int(v) for v in fitted_model().predict(matrix)]


def _log(client: Client, job_id: str) -> str:
    return "\n".join(line.text for line in client.jobs.logs(job_id, limit=10_000).lines)


def test_predictions_join_filters_output_version_and_lineage(
    client: Client, tmp_path: Path
) -> None:
    mv = register_model(client, tmp_path)
    data = table(250)
    dv = client.datasets.register("customers", data, profile=False)
    transformer = my.Transformer("churn", version=mv.version, batch_size=64, client=client)
    result = transformer.transform(
        "customers",
        join_source="Input",
        input_filter=FEATURES,
        output_filter=["id", "prediction"],
        logs=False,
    )

    assert result.state == "Completed" and result.finalized
    assert (result.rows_in, result.rows_out, result.error_count, result.errors) == (
        250,
        250,
        0,
        [],
    )
    assert (result.output_dataset, result.output_version) == ("customers-predictions", 1)
    out = client.datasets.to_arrow("customers-predictions", 1)
    assert out.column_names == ["id", "prediction"]
    assert out["id"].to_pylist() == list(range(250))
    assert out["prediction"].to_pylist() == _expected(data)

    # Finalizing again changes nothing: still one output version.
    again = client.transforms.finalize(result.job_id)
    assert (again.output_version, again.output_version_id) == (1, result.output_version_id)
    assert client.datasets.get("customers-predictions").latest_version == 1

    graph = client.lineage("job", result.job_id, direction="both", depth=1)
    edges = {(e.source, e.relation, e.target) for e in graph.edges}
    job_node = f"job:{result.job_id}"
    assert (f"model_version:{mv.id}", "model", job_node) in edges
    assert (f"dataset_version:{dv.id}", "input", job_node) in edges
    assert (job_node, "output", f"dataset_version:{result.output_version_id}") in edges

    job = client.jobs.get(result.job_id)
    assert job.kind == "transform" and job.spec.algorithm is None
    assert "transform: done · 250 rows in, 250 rows out, 0 errors" in _log(client, job.id)
    assert client.jobs.metrics(job.id, "transform:rows").latest["transform:rows"] == 250
    assert [t.job_id for t in client.transforms.list().transforms] == [result.job_id]


def _bad_csv(tmp_path: Path, n: int = 40, bad_row: int = 7) -> Path:
    data = table(n)
    path = tmp_path / "scores.csv"
    pacsv.write_csv(data, path)
    lines = path.read_text().splitlines()
    cells = lines[1 + bad_row].split(",")
    cells[2] = "abc"  # column b of data row 7 is not a number
    lines[1 + bad_row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_bad_record_is_reported_and_the_rest_continue_or_the_job_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = connect(home=tmp_path / "home")
    try:
        register_model(client, tmp_path)
        path = _bad_csv(tmp_path)
        dv = client.datasets.register("scores", path, profile=False)
        assert dv.format == "csv"
        request: dict[str, Any] = {
            "model": "churn",
            "dataset": "scores",
            "batch_size": 16,
            "join_source": "Input",
            "input_filter": FEATURES,
        }
        going = client.transforms.create({**request, "on_error": "continue"})
        stopping = client.transforms.create(
            {**request, "on_error": "stop", "output_dataset": "never"}
        )

        result = client.transforms.wait(going.job_id, logs=True, show_progress=True)
        assert result.state == "Completed" and result.finalized
        assert (result.rows_in, result.rows_out, result.error_count) == (40, 39, 1)
        [error] = result.errors
        assert (error.file, error.row) == (dv.files[0].path, 7)
        assert "'b'" in error.error and "abc" in error.error
        printed = capsys.readouterr()
        assert "transform: done · 40 rows in, 39 rows out, 1 errors" in printed.out
        out = client.datasets.to_arrow(result.output_dataset, result.output_version)
        assert out["id"].to_pylist() == [i for i in range(40) if i != 7]
        good = table(40).filter(pa.array([i != 7 for i in range(40)]))
        assert out["prediction"].to_pylist() == _expected(good)

        with pytest.raises(JobFailed, match=r"record 7 of scores\.csv failed \(on_error=stop\)"):
            client.transforms.wait(stopping.job_id, logs=False)
        stopped = client.transforms.get(stopping.job_id)
        assert stopped.state == "Failed" and stopped.finalized
        assert stopped.output_version is None
        assert "never" not in [d.name for d in client.datasets.list().datasets]
    finally:
        client.close()


def test_two_workers_shard_the_files_and_every_row_comes_out_once(tmp_path: Path) -> None:
    client = connect(home=tmp_path / "home")
    try:
        register_model(client, tmp_path)
        folder = tmp_path / "parts"
        folder.mkdir()
        for i in range(3):
            pq.write_table(table(100, start=100 * i, seed=i), folder / f"p{i}.parquet")
        client.datasets.register("sharded", folder, profile=False)
        result = my.Transformer("churn", instance_count=2, batch_size=30, client=client).transform(
            "sharded", join_source="Input", input_filter=FEATURES, logs=False
        )
        assert (result.rows_in, result.rows_out, result.error_count) == (300, 300, 0)
        out = client.datasets.to_arrow("sharded-predictions", result.output_version)
        assert out["id"].to_pylist() == list(range(300))  # each once, in input order
        version = client.datasets.version("sharded-predictions", result.output_version)
        assert [f.path for f in version.files] == [f"part-0000{i}.parquet" for i in range(3)]
        log = _log(client, result.job_id)
        assert "2 worker(s)" in log and "[1/2]" in log and "[2/2]" in log
    finally:
        client.close()


def _refused(client: Client, request: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        client.transforms.create(request)


def test_invalid_requests_are_refused_and_nothing_is_submitted(
    client: Client, tmp_path: Path
) -> None:
    register_model(client, tmp_path)
    client.datasets.register("customers", table(5), profile=False)
    ok = {"model": "churn", "dataset": "customers"}
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({**ok, "model": "nope"}, NotFound, "'nope'"),
        ({**ok, "version": "9"}, NotFound, "no version 9"),
        ({**ok, "dataset": "nope"}, NotFound, "'nope'"),
        ({**ok, "dataset_version": 4}, NotFound, "no version 4"),
        ({**ok, "input_filter": ["a", "zzz"]}, InvalidInput, "'zzz' are not in the input"),
        ({**ok, "input_filter": ["a", "a"]}, InvalidInput, "names a column twice"),
        ({**ok, "output_filter": ["id"]}, InvalidInput, "join_source='Input'"),
        (
            {**ok, "join_source": "Input", "output_filter": ["zzz"]},
            InvalidInput,
            "'zzz' are not in the result",
        ),
        ({**ok, "output_filter": ["probability_1"]}, InvalidInput, "probabilities=True"),
        ({"model": "churn"}, InvalidInput, "exactly one of dataset"),
        ({**ok, "content_type": "csv"}, InvalidInput, "does not match"),
        ({**ok, "split_type": "Line"}, InvalidInput, "Parquet splits by Record"),
        ({**ok, "output_dataset": "customers"}, InvalidInput, "is the input dataset"),
        ({**ok, "batch_size": 0}, InvalidInput, "batch_size"),
        ({**ok, "backend": "local", "instance_count": 0}, InvalidInput, "instance_count"),
        ({**ok, "cpus": 100_000}, InvalidInput, "cpus"),
    ]
    for request, error, match in cases:
        _refused(client, request, error, match)

    digest = client.artifacts.upload(tmp_path / "saved-churn" / "model.skops").digest
    client.models.register("onefile", artifact=digest, filename="model.skops", flavor="sklearn")
    _refused(client, {**ok, "model": "onefile"}, InvalidInput, "single file 'model.skops'")
    client.models.reject("churn", 1, reason="leaks the label")
    _refused(client, ok, Conflict, "Rejected")
    with pytest.raises(InvalidInput, match="POST /transforms"):
        client.jobs.submit({"kind": "transform"})

    assert client.jobs.list().total == 0
    assert client.transforms.list().total == 0
    assert "customers-predictions" not in [d.name for d in client.datasets.list().datasets]


def test_the_background_finisher_registers_the_output(tmp_path: Path, db_url: str) -> None:
    """Nobody waits for the job: the output is still registered (on both metadata stores)."""
    client = connect(home=tmp_path / "home", db=db_url)
    try:
        register_model(client, tmp_path)
        path = tmp_path / "rows.jsonl"
        rows = [
            '{"a": 0.5, "b": -1.0, "c": 2.0}',
            "",
            '{"a": 1.5, "b": 1.0, "c": 0.0}',
            '{"a": 1.5, "b": ',
            '{"a": -2.0, "b": 0.5, "c": 1.0}',
        ]
        path.write_text("\n".join(rows) + "\n")
        # Uploaded files rather than a dataset: registration would refuse the bad line.
        digest = client.artifacts.upload(path).digest
        created = client.transforms.create(
            {
                "model": "churn",
                "files": [{"path": "rows.jsonl", "digest": digest}],
                "content_type": "jsonl",
                "accept": "csv",
                "batch_size": 2,
            }
        )
        client.jobs.wait(created.job_id, logs=False)
        deadline = time.monotonic() + 30
        result: Transform = client.transforms.get(created.job_id)
        while not result.finalized and time.monotonic() < deadline:
            time.sleep(0.2)
            result = client.transforms.get(created.job_id)
        assert result.finalized and result.output_version == 1
        assert [(e.row, e.file) for e in result.errors] == [(3, "rows.jsonl")]
        assert result.output_dataset == "churn-predictions"
        version = client.datasets.version("churn-predictions", 1)
        assert version.format == "csv" and version.row_count == 3
        out = client.datasets.to_arrow("churn-predictions", 1)
        expected = fitted_model().predict(
            np.array([[0.5, -1.0, 2.0], [1.5, 1.0, 0.0], [-2.0, 0.5, 1.0]])
        )
        assert out["prediction"].to_pylist() == [int(v) for v in expected]
    finally:
        client.close()


def test_a_csv_output_whose_column_names_look_numeric_is_registered(tmp_path: Path) -> None:
    """The output's header row is written by the transform: its names ("2019", ...) are
    never mistaken for a row of data when the output dataset is registered."""
    client = connect(home=tmp_path / "home")
    try:
        register_model(client, tmp_path)
        x = features(12)
        years = ["2019", "2020", "2021"]
        path = tmp_path / "wide.csv"
        pacsv.write_csv(pa.table({y: pa.array(x[:, j]) for j, y in enumerate(years)}), path)
        client.datasets.register("wide", path, header=True, profile=False)
        created = client.transforms.create(
            {"model": "churn", "dataset": "wide", "accept": "csv", "join_source": "Input"}
        )
        client.jobs.wait(created.job_id, logs=False)
        deadline = time.monotonic() + 30
        result: Transform = client.transforms.get(created.job_id)
        while not result.finalized and time.monotonic() < deadline:
            time.sleep(0.2)
            result = client.transforms.get(created.job_id)
        assert result.finalized and result.output_version == 1, result
        version = client.datasets.version(result.output_dataset, 1)
        assert version.header and [c.name for c in version.columns][:3] == years
        out = client.datasets.to_arrow(result.output_dataset, 1)
        assert out.num_rows == 12
        assert out["prediction"].to_pylist() == [int(v) for v in fitted_model().predict(x)]
    finally:
        client.close()
