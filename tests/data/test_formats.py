"""Reading dataset files: detection, schemas, counts, malformed input and the SQL sandbox."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.data.formats import (
    ColumnSchema,
    DataSource,
    check_sql_expression,
    column_kind,
    count_rows,
    detect_format,
    duckdb_session,
    infer_schema,
    open_dataset,
    quote_ident,
)
from modelyard.errors import InvalidInput, NotFound


def store(root: Path, data: bytes) -> str:
    """Write ``data`` the way the artifact store does: content-addressed, no extension."""
    digest = hashlib.sha256(data).hexdigest()
    path = root / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def jsonl_bytes(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


TABLE = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "price": pa.array([1.5, None, 2.5, 4.0]),
        "name": pa.array(["a", "b", None, "d"]),
    }
)


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("train.parquet", b"", "parquet"),
        ("data/part-0.PQ", b"", "parquet"),
        ("x.csv", b"PAR1", "csv"),  # a known extension wins over the bytes
        ("events.jsonl", b"", "jsonl"),
        ("events.ndjson", b"", "jsonl"),
        ("ab12cd", b"PAR1\x15\x04", "parquet"),
        ("ab12cd", b'\n  {"a": 1}\n', "jsonl"),
        ("ab12cd", b'\xef\xbb\xbf{"a": 1}', "jsonl"),
        ("ab12cd", b"a,b\n1,2\n", "csv"),
        ("ab12cd", b"", "csv"),
        ("notes.txt", b'{"a": 1}', "jsonl"),  # unknown extension: sniffed
    ],
)
def test_detect_format(name: str, head: bytes, expected: str) -> None:
    assert detect_format(name, head) == expected


def test_parquet_schema_and_count_from_extensionless_objects(tmp_path: Path) -> None:
    a = store(tmp_path, parquet_bytes(TABLE))
    b = store(tmp_path, parquet_bytes(TABLE.slice(0, 2)))
    src = DataSource(files=[a, b], format="parquet")
    assert infer_schema(src) == [
        ColumnSchema(name="id", arrow_type="int64", nullable=True),
        ColumnSchema(name="price", arrow_type="double", nullable=True),
        ColumnSchema(name="name", arrow_type="string", nullable=True),
    ]
    assert count_rows(src) == 6
    assert open_dataset(src).to_table().column("id").to_pylist() == [1, 2, 3, 4, 1, 2]


def test_csv_types_widen_across_files_and_empty_fields_are_null(tmp_path: Path) -> None:
    a = store(tmp_path, b"id,price,name\n1,2,a\n2,3,\n")
    b = store(tmp_path, b"id,price,name\n3,2.5,c\n")
    src = DataSource(files=[a, b], format="csv")
    types = {c.name: c.arrow_type for c in infer_schema(src)}
    assert types == {"id": "int64", "price": "double", "name": "string"}
    table = open_dataset(src).to_table()
    assert table.column("price").to_pylist() == [2.0, 3.0, 2.5]
    assert table.column("name").to_pylist() == ["a", None, "c"]
    assert count_rows(src) == 3


def test_jsonl_schema_and_count(tmp_path: Path) -> None:
    path = store(tmp_path, jsonl_bytes([{"a": 1, "s": "x"}, {"a": 2.5, "s": None}, {"a": 3}]))
    src = DataSource(files=[path], format="jsonl")
    assert {c.name: c.arrow_type for c in infer_schema(src)} == {"a": "double", "s": "string"}
    assert count_rows(src) == 3


def test_fsspec_filesystem(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/objects/abc123", parquet_bytes(TABLE))
    src = DataSource(files=["/bucket/objects/abc123"], format="parquet", filesystem=fs)
    assert [c.name for c in infer_schema(src)] == ["id", "price", "name"]
    assert count_rows(src) == 4
    with duckdb_session(src) as session:
        assert session.rows("SELECT sum(id) FROM data", context="t") == [(10,)]


def test_mixed_column_names_are_refused(tmp_path: Path) -> None:
    a = store(tmp_path, parquet_bytes(TABLE))
    b = store(tmp_path, parquet_bytes(TABLE.rename_columns(["id", "price", "title"])))
    with pytest.raises(InvalidInput, match="mixed schemas") as err:
        infer_schema(DataSource(files=[a, b], format="parquet"))
    assert b in err.value.message and "title" in err.value.message


def test_incompatible_types_are_refused(tmp_path: Path) -> None:
    a = store(tmp_path, b"id,v\n1,2\n")
    b = store(tmp_path, b"id,v\n2,hello\n")
    with pytest.raises(InvalidInput, match=r"mixed schemas.*v"):
        count_rows(DataSource(files=[a, b], format="csv"))


@pytest.mark.parametrize(
    ("fmt", "data", "problem"),
    [
        ("parquet", b"id,name\n1,a\n", "not a readable parquet file"),
        ("jsonl", b"this is not json\n", "not a readable jsonl file"),
        ("csv", b"a,b,c\n1,2\n3,4,5,6\n", "not a readable csv file"),
    ],
)
def test_malformed_files(tmp_path: Path, fmt: str, data: bytes, problem: str) -> None:
    path = store(tmp_path, data)
    with pytest.raises(InvalidInput, match=problem) as err:
        infer_schema(DataSource(files=[path], format=fmt))  # type: ignore[arg-type]
    assert path in err.value.message


def test_missing_file_and_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        count_rows(DataSource(files=[str(tmp_path / "nope")], format="parquet"))
    with pytest.raises(InvalidInput, match="at least one file"):
        count_rows(DataSource(files=[], format="parquet"))
    with pytest.raises(InvalidInput, match="accepted: parquet, csv, jsonl"):
        count_rows(DataSource(files=["x"], format="xlsx"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unsupported filesystem"):
        count_rows(DataSource(files=["x"], format="csv", filesystem=object()))


def test_column_kinds() -> None:
    assert column_kind(pa.int8()) == "integer"
    assert column_kind(pa.uint64()) == "integer"
    assert column_kind(pa.float16()) == "float"
    assert column_kind(pa.decimal128(10, 2)) == "decimal"
    assert column_kind(pa.large_string()) == "string"
    assert column_kind(pa.dictionary(pa.int32(), pa.string())) == "string"
    assert column_kind(pa.date32()) == "date"
    assert column_kind(pa.timestamp("ns", tz="Europe/Paris")) == "timestamp"
    assert column_kind(pa.time64("us")) == "time"
    assert column_kind(pa.bool_()) == "boolean"
    assert column_kind(pa.list_(pa.int64())) == "other"
    assert column_kind(pa.binary()) == "other"


def test_odd_column_names_are_quoted(tmp_path: Path) -> None:
    odd = 'he said "hi"; drop'
    path = store(tmp_path, parquet_bytes(pa.table({odd: [1, 2, 3], "a b": [4, 5, 6]})))
    with duckdb_session(DataSource(files=[path], format="parquet")) as session:
        sql = f"SELECT sum({quote_ident(odd)}), sum({quote_ident('a b')}) FROM data"
        assert session.rows(sql, context="t") == [(6, 15)]


def test_columns_differing_only_by_case_are_refused(tmp_path: Path) -> None:
    path = store(tmp_path, parquet_bytes(pa.table({"A": [1], "a": [2]})))
    with (
        pytest.raises(InvalidInput, match="differ only by letter case"),
        duckdb_session(DataSource(files=[path], format="parquet")),
    ):
        pass


def test_float16_is_readable_by_sql(tmp_path: Path) -> None:
    table = pa.table({"h": pa.array(np.array([1.0, 2.5], dtype=np.float16))})
    path = store(tmp_path, parquet_bytes(table))
    with duckdb_session(DataSource(files=[path], format="parquet")) as session:
        assert session.rows("SELECT sum(h) FROM data", context="t") == [(3.5,)]


@pytest.mark.parametrize("trusted", [False, True])
def test_session_cannot_touch_other_files(tmp_path: Path, trusted: bool) -> None:
    path = store(tmp_path, parquet_bytes(TABLE))
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    target = tmp_path / "out.csv"
    before = Path(path).read_bytes()
    with duckdb_session(DataSource(files=[path], format="parquet"), trusted_sql_only=trusted) as s:
        assert s.rows("SELECT count(*) FROM data", context="t") == [(4,)]
        for sql in [
            f"SELECT * FROM read_csv('{secret}')",
            f"COPY data TO '{target}'",
            f"ATTACH '{tmp_path / 'x.db'}' AS x",
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
            "INSTALL httpfs",
        ]:
            with pytest.raises(InvalidInput):
                s.rows(sql, context="t")
        if not trusted:
            # The Arrow-backed session opens no file at all, not even the dataset's own.
            with pytest.raises(InvalidInput, match="disabled"):
                s.rows(f"SELECT count(*) FROM read_parquet('{path}')", context="t")
    assert not target.exists() and not (tmp_path / "x.db").exists()
    assert Path(path).read_bytes() == before


def test_session_error_names_the_context(tmp_path: Path) -> None:
    path = store(tmp_path, b"a,b\n1,2\n")
    with duckdb_session(DataSource(files=[path], format="csv")) as session:
        with pytest.raises(InvalidInput, match=r"my step:.*nope"):
            session.rows("SELECT nope FROM data", context="my step")
        with pytest.raises(
            InvalidInput, match=r"unknown column.*'zz'.*available columns: \['a', 'b'\]"
        ):
            session.require_columns(["a", "zz"], context="rule x")
        assert isinstance(session.con, duckdb.DuckDBPyConnection)


@pytest.mark.parametrize(
    "expr",
    [
        "a > 1 AND b = 'x;y'",
        '"odd;name" IS NOT NULL',
        "(a + (b * 2)) > 3",
        "a IN (SELECT a FROM data WHERE b > 0)",
        "s = 'it''s ) fine'",
        "s = $$dollar ) ; quoted$$",
        "name = 'caf\u00e9' AND (x \u2265 1 OR y < 2)",
    ],
)
def test_sql_expression_accepted(expr: str) -> None:
    check_sql_expression(expr, context="rule")


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("", "empty"),
        ("a > 1; DROP TABLE data", "single expression"),
        ("a > 1 -- comment", "comments"),
        ("a > 1 /* c */", "comments"),
        ("a > 1) OR (1 = 1", "unbalanced '\\)'"),
        ("(a > 1", "unbalanced '\\('"),
        ("true), false) FROM data UNION SELECT 1 --", "unbalanced|comments"),
        ("x \u2260 1 ; y", "single expression"),  # multi-byte text before the ';'
        ("E'\\'' ) OR (1 = 1", "unbalanced"),  # an escaped quote does not hide the ')'
        ("$t$ a) $t$ ; x", "single expression"),
    ],
)
def test_sql_expression_refused(expr: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        check_sql_expression(expr, context="rule")
