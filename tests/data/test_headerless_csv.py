"""CSV files without a header row (the SageMaker convention for training data).

Registered as they were before this fix, their first row became the header: a 150-row
iris file was ``csv, 149 rows`` with columns ``5.1, 3.5, …`` and that row was lost from
the profile and the checks. Both transports (the ``client`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client.sdk import Client
from modelyard.errors import InvalidInput

ROWS = [
    "5.1,3.5,1.4,0.2,Iris-setosa",
    "4.9,3.0,1.4,0.2,Iris-setosa",
    "7.0,3.2,4.7,1.4,Iris-versicolor",
    "6.4,3.2,4.5,1.5,Iris-versicolor",
    "6.3,3.3,6.0,2.5,Iris-virginica",
]
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


@pytest.fixture
def iris(tmp_path: Path) -> Path:
    path = tmp_path / "iris.csv"
    path.write_text("\n".join(ROWS) + "\n")
    return path


def test_a_headerless_csv_is_refused_with_the_fix_and_registers_nothing(
    client: Client, iris: Path
) -> None:
    with pytest.raises(InvalidInput) as err:
        client.datasets.register("iris", iris)
    message = err.value.message
    assert "looks like data" in message and "5.1, 3.5" in message
    assert "--no-header" in message and "header=False" in message and "--header" in message
    assert client.datasets.list().total == 0


def test_no_header_reads_every_row_with_generated_names(client: Client, iris: Path) -> None:
    v = client.datasets.register("iris", iris, header=False)
    assert v.header is False and v.row_count == len(ROWS)
    assert [c.name for c in v.columns] == ["_c0", "_c1", "_c2", "_c3", "_c4"]
    assert [c.arrow_type for c in v.columns][:4] == ["double"] * 4
    assert v.profile is not None and v.profile.row_count == len(ROWS)
    first = next(c for c in v.profile.columns if c.name == "_c0")
    assert first.min == 4.9 and first.max == 7.0  # 5.1 is the first row, read as data
    # Later reads use the same options: profile, checks and the SDK's to_arrow.
    assert client.datasets.profile("iris").row_count == len(ROWS)
    report = client.datasets.check("iris", [{"type": "range", "column": "_c0", "max": 6.5}])
    assert report.report.results[0].failing_rows == 1  # 7.0
    table = client.datasets.to_arrow("iris")
    assert table.num_rows == len(ROWS) and table.column_names[0] == "_c0"
    assert table.column("_c4").to_pylist()[0] == "Iris-setosa"


def test_no_header_with_column_names(client: Client, iris: Path, tmp_path: Path) -> None:
    v = client.datasets.register("iris", iris, header=False, columns=NAMES)
    assert [c.name for c in v.columns] == NAMES and v.row_count == len(ROWS)
    # Without header= the names alone say there is no header row.
    v2 = client.datasets.register("iris", iris, columns=NAMES)
    assert v2.header is False and v2.row_count == len(ROWS)
    assert client.datasets.diff("iris", 1, 2).row_count_b == len(ROWS)
    # The stored file is the uploaded one, byte for byte (what a job's channel gets).
    out = client.datasets.download("iris", tmp_path / "out", version=1)
    assert (out / "iris.csv").read_bytes() == iris.read_bytes()
    with pytest.raises(InvalidInput, match=r"3 column names given, but the rows of .* have 5"):
        client.datasets.register("iris", iris, header=False, columns=["a", "b", "c"])
    with pytest.raises(InvalidInput, match="with header=true the names come from the header"):
        client.datasets.register("iris", iris, header=True, columns=NAMES)
    assert client.datasets.get("iris").latest_version == 2


def test_header_true_takes_a_numeric_looking_first_row_as_the_header(
    client: Client, tmp_path: Path
) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text("country,2019,2020\nfr,1.5,2.5\nde,3.5,4.5\n")
    with pytest.raises(InvalidInput, match="looks like data"):
        client.datasets.register("wide", wide)
    v = client.datasets.register("wide", wide, header=True)
    assert v.header is True and [c.name for c in v.columns] == ["country", "2019", "2020"]
    assert v.row_count == 2


def test_ordinary_csvs_and_other_formats_are_unaffected(client: Client, tmp_path: Path) -> None:
    named = tmp_path / "named.csv"
    named.write_text("x,label\n1.5,a\n2.5,b\n")
    v = client.datasets.register("named", named)
    assert v.header is True and [c.name for c in v.columns] == ["x", "label"]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"x": 1}\n')
    with pytest.raises(InvalidInput, match="CSV files only"):
        client.datasets.register("j", jsonl, header=False)


def test_cli_register_no_header_with_columns(iris: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["datasets", "register", "iris", str(iris)])
    assert refused.exit_code == 1 and "--no-header" in refused.output
    ok = runner.invoke(
        app,
        [
            "--json",
            "datasets",
            "register",
            "iris",
            str(iris),
            "--no-header",
            "--columns",
            ",".join(NAMES),
        ],
    )
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["header"] is False and data["row_count"] == len(ROWS)
    assert [c["name"] for c in data["columns"]] == NAMES
    generated = runner.invoke(
        app, ["--json", "datasets", "register", "iris", str(iris), "--no-header"]
    )
    assert json.loads(generated.output)["columns"][0]["name"] == "_c0"
    bad = runner.invoke(app, ["datasets", "register", "iris", str(iris), "--columns", "a,,b"])
    assert bad.exit_code == 1 and "empty name" in bad.output
