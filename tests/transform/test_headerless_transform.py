"""Batch transform of a CSV dataset version without a header row (SageMaker's convention
for batch-transform input): every line is a record, read with the version's column names.

Before the fix the first line was taken as the header: the first record was lost, the
columns were named after its values and ``input_filter=["_c1", ...]`` named no column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from transformkit import FEATURES, fitted_model, register_model, table

from modelyard.client.sdk import Client, connect
from modelyard.transform.schemas import Transform

N = 40


def _expected(data: pa.Table) -> list[int]:
    matrix = np.column_stack([data[name].to_numpy() for name in FEATURES])
    return [int(v) for v in fitted_model().predict(matrix)]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(home=tmp_path / "home")
    register_model(c, tmp_path)
    try:
        yield c
    finally:
        c.close()


def _headerless(tmp_path: Path, data: pa.Table) -> Path:
    path = tmp_path / "scores.csv"
    pacsv.write_csv(data, path, write_options=pacsv.WriteOptions(include_header=False))
    first = path.read_text().splitlines()[0]
    assert first.startswith("0,"), first  # no header line: the file starts with record 0
    return path


def _run(client: Client, request: dict[str, Any]) -> Transform:
    job = client.transforms.create({"model": "churn", "batch_size": 16, **request})
    result = client.transforms.wait(job.job_id, logs=False)
    assert result.state == "Completed" and result.finalized, result
    return result


def test_a_headerless_version_is_read_with_its_generated_column_names(
    client: Client, tmp_path: Path
) -> None:
    data = table(N)
    dv = client.datasets.register("scores", _headerless(tmp_path, data), header=False)
    assert dv.header is False and [c.name for c in dv.columns] == ["_c0", "_c1", "_c2", "_c3"]

    result = _run(
        client,
        {
            "dataset": "scores",
            "join_source": "Input",
            "input_filter": ["_c1", "_c2", "_c3"],
            "accept": "csv",
        },
    )

    assert (result.rows_in, result.rows_out, result.error_count) == (N, N, 0)
    out = client.datasets.to_arrow(result.output_dataset, result.output_version)
    assert out.column_names == ["_c0", "_c1", "_c2", "_c3", "prediction"]
    assert out["_c0"].to_pylist() == list(range(N))  # the first record included
    assert out["prediction"].to_pylist() == _expected(data)
    # The output CSV has a header row (the names above), and is registered as such.
    output = client.datasets.version(result.output_dataset, result.output_version)
    assert output.format == "csv" and output.header is True


def test_a_headerless_version_is_read_with_the_names_it_was_registered_with(
    client: Client, tmp_path: Path
) -> None:
    data = table(N)
    client.datasets.register("scores", _headerless(tmp_path, data), columns=["id", *FEATURES])

    result = _run(client, {"dataset": "scores", "join_source": "Input", "input_filter": FEATURES})

    assert (result.rows_in, result.rows_out, result.error_count) == (N, N, 0)
    out = client.datasets.to_arrow(result.output_dataset, result.output_version)
    assert out.column_names == ["id", *FEATURES, "prediction"]
    assert out["id"].to_pylist() == list(range(N))
    assert out["prediction"].to_pylist() == _expected(data)


def test_a_bad_record_of_a_headerless_file_is_reported_at_its_row(
    client: Client, tmp_path: Path
) -> None:
    path = _headerless(tmp_path, table(N))
    lines = path.read_text().splitlines()
    cells = lines[7].split(",")
    cells[2] = "abc"  # column _c2 of record 7 is not a number
    lines[7] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    dv = client.datasets.register("scores", path, header=False, profile=False)

    result = _run(
        client,
        {
            "dataset": "scores",
            "join_source": "Input",
            "input_filter": ["_c1", "_c2", "_c3"],
            "on_error": "continue",
        },
    )

    assert (result.rows_in, result.rows_out, result.error_count) == (N, N - 1, 1)
    [error] = result.errors
    assert (error.file, error.row) == (dv.files[0].path, 7)
    assert "'_c2'" in error.error and "abc" in error.error
    out = client.datasets.to_arrow(result.output_dataset, result.output_version)
    kept = [i for i in range(N) if i != 7]
    assert out["_c0"].to_pylist() == kept
    good = table(N).filter(pa.array([i in kept for i in range(N)]))
    assert out["prediction"].to_pylist() == _expected(good)
