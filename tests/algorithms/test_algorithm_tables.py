"""Reading channels: format sniffing, concatenation, and turning inputs into matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.algorithms import DataError
from modelyard.algorithms._contract import Contract
from modelyard.algorithms._tables import as_matrix, read_channel, resolve_columns, sniff_format


def _contract(folder: Path) -> Contract:
    return Contract.from_environment({"SM_CHANNEL_TRAIN": str(folder)}, [])


def test_formats_are_sniffed_from_content_and_concatenated(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1, 2], "b": [0.5, 1.5]}), tmp_path / "part-0")
    (tmp_path / "part-1.bin").write_text('{"a": 3, "b": 2.5}\n{"a": 4, "b": 3.5}\n')
    (tmp_path / "z").mkdir()  # sorted path order: part-0, part-1.bin, z/part-2
    (tmp_path / "z" / "part-2.parquet").write_text("a,b\n5,4.5\n")  # CSV, whatever the name
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-0.crc").write_text("junk")
    assert [sniff_format(tmp_path / n) for n in ("part-0", "part-1.bin")] == ["parquet", "jsonl"]
    table = read_channel(_contract(tmp_path), "train", required=True)
    assert table is not None
    assert table.column("a").to_pylist() == [1, 2, 3, 4, 5]
    assert table.column("b").to_pylist() == [0.5, 1.5, 2.5, 3.5, 4.5]


def test_headerless_csv_and_label_position(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,0.1,0.2\n0,0.3,0.4\n")
    table = read_channel(_contract(tmp_path), "train", required=True, csv_header=False)
    assert table is not None
    columns = resolve_columns(table, "train", label="label", label_index=0)
    assert (columns.label, columns.features) == ("f0", ("f1", "f2"))


def test_files_that_disagree_or_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("x,z\n1,2\n")
    with pytest.raises(DataError, match="all files must have the same columns"):
        read_channel(_contract(tmp_path), "train", required=True)
    (tmp_path / "b.csv").write_text('{"x": 1, "y": \n')
    with pytest.raises(DataError, match=r"cannot read .*b\.csv"):
        read_channel(_contract(tmp_path), "train", required=True)


def test_absent_optional_channel_is_none(tmp_path: Path) -> None:
    assert read_channel(_contract(tmp_path), "validation", required=False) is None


def test_prediction_inputs() -> None:
    names = ["a", "b"]
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    for data in (
        expected,
        [[1, 2], [3, 4]],
        [{"b": 2, "a": 1}, {"a": 3, "b": 4}],
        pa.table({"b": [2, 4], "a": [1, 3]}),
    ):
        np.testing.assert_array_equal(as_matrix(data, names, np.float64), expected)
    np.testing.assert_array_equal(as_matrix([1, 2], names, np.float64), expected[:1])
    with pytest.raises(ValueError, match=r"row 1 lacks feature\(s\) 'b'"):
        as_matrix([{"a": 1, "b": 2}, {"a": 1}], names, np.float64)
    with pytest.raises(ValueError, match=r"expected \(rows, 2\)"):
        as_matrix([[1, 2, 3]], names, np.float64)
    with pytest.raises(ValueError, match="not numeric"):
        as_matrix([["x", "y"]], names, np.float64)
