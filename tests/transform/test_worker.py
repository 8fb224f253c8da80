"""The in-job program without a job: vectorised mini-batches, finding bad records by
bisection, positions in each format, the first-batch guard, output formats."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelyard.transform import reading
from modelyard.transform.config import WorkerConfig
from modelyard.transform.worker import Counters, FileRun, Predictor, Progress, StopTransform


class Doubler:
    """A model that doubles column 0, refuses NaN and counts the rows of each call."""

    predict_proba = None
    classes = None
    descriptor = None

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, x: Any) -> Any:
        self.calls.append(len(x))
        if np.isnan(x).any():
            raise ValueError("NaN in the input")
        return x[:, 0] * 2


def _config(fmt: str, **overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {
        "model": "m",
        "model_version": 1,
        "model_version_id": "mv-1",
        "model_filename": "model.tar.gz",
        "dataset": "d",
        "dataset_version": 1,
        "dataset_version_id": "dsv-1",
        "format": fmt,
        "split_type": "Record",
        "batch_size": 100,
        "max_concurrent": 1,
        "workers": 1,
        "join_source": "Input",
        "input_filter": ["x"],
        "output_filter": None,
        "probabilities": False,
        "accept": "parquet",
        "on_error": "continue",
        "max_errors": None,
        "output_dataset": "d-predictions",
    }
    values.update(overrides)
    return WorkerConfig.model_validate(values)


def _run(
    config: WorkerConfig,
    model: Any,
    path: Path,
    tmp_path: Path,
    column_names: list[str] | None = None,
) -> tuple[int, list[dict[str, Any]], Path]:
    errors = io.StringIO()
    counters = Counters()
    run = FileRun(config, Predictor(config, model), counters, errors, Progress("", None, counters))
    part = tmp_path / f"out.{config.accept}"
    written = run.run(reading.InputFile(0, path.name, path, column_names=column_names), part)
    return written, [json.loads(line) for line in errors.getvalue().splitlines()], part


def test_good_batches_are_one_call_each_and_a_bad_record_is_found_by_bisection(
    tmp_path: Path,
) -> None:
    values = np.arange(1000, dtype=np.float64)
    values[537] = np.nan
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": np.arange(1000), "x": values}), path, row_group_size=300)
    model = Doubler()

    written, errors, part = _run(_config("parquet"), model, path, tmp_path)

    assert written == 999
    assert errors == [{"file": "in.parquet", "row": 537, "error": "ValueError: NaN in the input"}]
    assert model.calls.count(100) == 10  # nine good batches + the first try of the bad one
    assert len(model.calls) <= 10 + 2 * 7  # bisection: two calls per halving of 100 rows
    out = pq.read_table(part)
    assert out["id"].to_pylist() == [i for i in range(1000) if i != 537]
    assert out["prediction"].to_pylist() == [2.0 * i for i in range(1000) if i != 537]


def test_threads_keep_the_input_order(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": np.arange(5000, dtype=np.float64)}), path)
    written, errors, part = _run(
        _config("parquet", max_concurrent=4, batch_size=64, join_source="None"),
        Doubler(),
        path,
        tmp_path,
    )
    assert (written, errors) == (5000, [])
    assert pq.read_table(part).column_names == ["prediction"]
    assert pq.read_table(part)["prediction"].to_pylist() == [2.0 * i for i in range(5000)]


@pytest.mark.parametrize("max_concurrent", [1, 3])
def test_files_read_ahead_in_order_and_an_unreadable_file_leaves_the_next_ones_predicted(
    tmp_path: Path, max_concurrent: int
) -> None:
    from modelyard.transform.worker import _files_read_ahead, _part_name

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        values = np.arange(i * 1000, i * 1000 + 250, dtype=np.float64)
        pq.write_table(pa.table({"x": values}), folder / f"f{i}.parquet")
    (folder / "f1.parquet").write_bytes(b"PAR1 not a parquet file")
    files = [reading.InputFile(i, f"f{i}.parquet", folder / f"f{i}.parquet") for i in range(4)]
    config = _config("parquet", batch_size=100, join_source="None", max_concurrent=max_concurrent)
    errors = io.StringIO()
    counters = Counters()
    model = Doubler()
    run = FileRun(config, Predictor(config, model), counters, errors, Progress("", None, counters))
    written = {
        src.index: run.run(src, tmp_path / _part_name(src.index, "parquet"), batches)
        for src, batches in zip(files, _files_read_ahead(config, files), strict=True)
    }
    assert written == {0: 250, 1: 0, 2: 250, 3: 250}
    for i in (0, 2, 3):
        got = pq.read_table(tmp_path / _part_name(i, "parquet"))["prediction"].to_pylist()
        assert got == [2.0 * v for v in range(i * 1000, i * 1000 + 250)]
    assert not (tmp_path / _part_name(1, "parquet")).exists()
    [error] = [json.loads(line) for line in errors.getvalue().splitlines()]
    assert (error["file"], error["row"]) == ("f1.parquet", -1)
    assert error["error"].startswith("reading the file failed"), error
    assert (counters.rows_in, counters.rows_out) == (750, 750)
    assert sorted(model.calls) == sorted([100, 100, 50] * 3)


def test_csv_positions_count_data_rows_and_malformed_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    rows = ["id,x"] + [f"{i},{i}.5" for i in range(30)]
    rows[1 + 12] = "12,twelve"
    rows[1 + 20] = "20,1,2"  # one field too many: the reader skips the line
    rows[1 + 23] = "23,x23"  # counted as row 23 although the reader skipped row 20
    path.write_text("\n".join(rows) + "\n")

    written, errors, part = _run(
        _config("csv", batch_size=8, accept="csv"), Doubler(), path, tmp_path
    )

    assert written == 27
    assert sorted((e["row"], e["error"]) for e in errors) == [
        (12, "ValueError: column 'x': 'twelve' is not a number"),
        (20, "expected 2 fields, got 3: '20,1,2'"),
        (23, "ValueError: column 'x': 'x23' is not a number"),
    ]
    out = pacsv.read_csv(part)
    assert out["id"].to_pylist() == [i for i in range(30) if i not in (12, 20, 23)]


def test_headerless_csv_positions_count_every_line_as_a_record(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    rows = [f"{i},{i}.5" for i in range(30)]  # no header line
    rows[12] = "12,twelve"
    rows[20] = "20,1,2"  # one field too many: the reader skips the line
    rows[23] = "23,x23"  # counted as row 23 although the reader skipped row 20
    path.write_text("\n".join(rows) + "\n")

    written, errors, part = _run(
        _config("csv", batch_size=8, accept="csv"), Doubler(), path, tmp_path, ["id", "x"]
    )

    assert written == 27
    assert sorted((e["row"], e["error"]) for e in errors) == [
        (12, "ValueError: column 'x': 'twelve' is not a number"),
        (20, "expected 2 fields, got 3: '20,1,2'"),
        (23, "ValueError: column 'x': 'x23' is not a number"),
    ]
    out = pacsv.read_csv(part)  # the output has a header row
    assert out.column_names[:2] == ["id", "x"]
    assert out["id"].to_pylist() == [i for i in range(30) if i not in (12, 20, 23)]


def test_jsonl_positions_are_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = ['{"x": 1.0}', "", '{"x": 2.0}', '{"x": "oops"}', "{broken", '{"x": 3.0}']
    path.write_text("\n".join(lines) + "\n")
    written, errors, part = _run(
        _config("jsonl", batch_size=4, accept="jsonl", join_source="None"),
        Doubler(),
        path,
        tmp_path,
    )
    assert written == 3
    assert [e["row"] for e in errors] == [3, 4]
    assert [json.loads(line) for line in part.read_text().splitlines()] == [
        {"prediction": 2.0},
        {"prediction": 4.0},
        {"prediction": 6.0},
    ]


def test_on_error_stop_and_max_errors_end_the_run(tmp_path: Path) -> None:
    values = np.arange(50, dtype=np.float64)
    values[[5, 9]] = np.nan
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": values}), path)
    with pytest.raises(StopTransform, match=r"record 5 of in\.parquet failed \(on_error=stop\)"):
        _run(_config("parquet", on_error="stop", batch_size=10), Doubler(), path, tmp_path)
    with pytest.raises(StopTransform, match="2 records failed, more than max_errors=1"):
        _run(_config("parquet", max_errors=1, batch_size=10), Doubler(), path, tmp_path)


def test_a_first_batch_that_fails_entirely_ends_the_run(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": [np.nan] * 40}), path)
    model = Doubler()
    with pytest.raises(StopTransform, match="every record of the first mini-batch"):
        _run(_config("parquet", batch_size=10), model, path, tmp_path)
    assert len(model.calls) == 19  # one batch bisected, then it stops


def test_filters_naming_missing_columns_end_the_run(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0]}), path)
    with pytest.raises(StopTransform, match="input column"):
        _run(_config("parquet", input_filter=["nope"]), Doubler(), path, tmp_path)
    with pytest.raises(StopTransform, match="output_filter column"):
        _run(_config("parquet", output_filter=["nope"]), Doubler(), path, tmp_path)


def test_worker_config_round_trips_through_job_hyperparameters() -> None:
    config = _config("csv", input_filter=["a", "b,c"], max_errors=None, dataset=None)
    as_strings = {k: str(v) for k, v in config.to_hyperparameters().items()}
    assert WorkerConfig.from_hyperparameters(as_strings) == config
    assert WorkerConfig.from_hyperparameters(config.to_hyperparameters()) == config


def test_a_skops_model_loads_without_importing_pytorch(tmp_path: Path) -> None:
    """skops' import walks every scikit-learn subpackage; the vendored array-API module
    for PyTorch (and so PyTorch, ~2 CPU-s) stays out of a transform job's start."""
    pytest.importorskip("torch", reason="without PyTorch there is nothing to keep out")
    pytest.importorskip("skops", reason="the sklearn flavor saves with skops only if installed")
    import subprocess
    import sys

    from sklearn.ensemble import HistGradientBoostingClassifier

    from modelyard.flavors import save_model

    x = np.random.default_rng(0).standard_normal((200, 3))
    model = HistGradientBoostingClassifier(max_iter=5).fit(x, x[:, 0] > 0)
    save_model(model, tmp_path / "m")
    assert list((tmp_path / "m").glob("*.skops"))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import modelyard.transform.worker\n"
        "from modelyard.flavors import load_model\n"
        f"folder = Path({str(tmp_path / 'm')!r})\n"
        "model = load_model(folder)\n"
        "print(model.predict([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]).tolist())\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.split() == ["[True,", "False]", "False"], done.stdout


def test_the_matrix_is_row_ordered_and_keeps_float32_only_when_every_column_is() -> None:
    from modelyard.transform.worker import Matrix

    a = np.array([1.5, 2.5, 3.5], dtype=np.float32)
    b = np.array([-1.0, 0.0, 7.0], dtype=np.float32)
    x = Matrix()(pa.RecordBatch.from_arrays([pa.array(a), pa.array(b)], names=["a", "b"]))
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(x, np.column_stack([a, b]))

    mixed = pa.RecordBatch.from_arrays(
        [pa.array(a), pa.array([1, None, 3], pa.int64()), pa.array(["4", "5.5", None])],
        names=["a", "n", "s"],
    )
    y = Matrix()(mixed)
    assert y.dtype == np.float64 and y.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(y, [[1.5, 1.0, 4.0], [2.5, np.nan, 5.5], [3.5, 3.0, np.nan]])


def test_a_later_job_of_the_same_model_artifact_reuses_its_verified_onnx_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tarfile

    from sklearn.ensemble import HistGradientBoostingClassifier

    from modelyard.flavors import save_model
    from modelyard.transform import fastpath, worker

    monkeypatch.setenv(fastpath.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("SM_NUM_CPUS", "2")
    monkeypatch.setattr(fastpath, "_race", lambda ort, native, x: (0.0, 1.0))  # ONNX wins
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 4), dtype=np.float32)
    model = HistGradientBoostingClassifier(max_iter=10).fit(x, x[:, 0] + x[:, 2] > 0)
    save_model(model, tmp_path / "saved")
    (tmp_path / "model").mkdir()
    with tarfile.open(tmp_path / "model" / "model.tar.gz", "w:gz") as tar:
        for item in (tmp_path / "saved").iterdir():
            tar.add(item, arcname=item.name)
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.table({f"f{j}": x[:, j] for j in range(4)}), tmp_path / "data" / "part.parquet"
    )
    config = _config("parquet", batch_size=2000, input_filter=None, join_source="None")
    engines = []
    for job in ("first", "second"):
        paths = worker.Paths(
            data=tmp_path / "data",
            model=tmp_path / "model",
            output=tmp_path / job / "output",
            scratch=tmp_path / job / "transform",
        )
        paths.output.mkdir(parents=True)
        assert worker.transform(config, paths)["rows_out"] == 3000
        got = pq.read_table(paths.output / "data" / "part-00000.parquet")["prediction"]
        np.testing.assert_array_equal(got.to_numpy(), model.predict(x))
        engines.append(
            [ln for ln in capsys.readouterr().out.splitlines() if "transform: engine" in ln]
        )
    assert engines[0] and "onnxruntime (converted" in engines[0][0], engines
    assert engines[1] and "onnxruntime (cached: converted" in engines[1][0], engines
    # One verified model, in a folder named by a SHA-256 (ONNX Runtime may add its own
    # "Microsoft" folder beside it when its environment is first created here).
    stored = [p for p in (tmp_path / "cache").iterdir() if len(p.name) == 64]
    assert len(stored) == 1, list((tmp_path / "cache").iterdir())


def test_an_output_part_that_cannot_be_written_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": np.arange(300, dtype=np.float64)}), path)
    (tmp_path / "blocked").write_text("a file where the part's folder should be")
    config = _config("parquet", join_source="None")
    errors = io.StringIO()
    counters = Counters()
    run = FileRun(
        config, Predictor(config, Doubler()), counters, errors, Progress("", None, counters)
    )
    run.run(reading.InputFile(0, path.name, path), tmp_path / "blocked" / "part.parquet")
    [error] = [json.loads(line) for line in errors.getvalue().splitlines()]
    assert (error["file"], error["row"]) == ("in.parquet", -1)
    assert error["error"].startswith("writing its output failed"), error

    stop = _config("parquet", join_source="None", on_error="stop")
    run = FileRun(
        stop,
        Predictor(stop, Doubler()),
        Counters(),
        io.StringIO(),
        progress=Progress("", None, Counters()),
    )
    with pytest.raises(StopTransform, match="writing its output failed"):
        run.run(reading.InputFile(0, path.name, path), tmp_path / "blocked" / "part.parquet")
