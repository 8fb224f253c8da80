"""Data-quality rules: exact failing-row counts, validation, and the SQL sandbox."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import TypeAdapter, ValidationError

from modelyard.data.formats import DataSource
from modelyard.data.quality import (
    AllowedValuesRule,
    CompletenessRule,
    QualityReport,
    RangeRule,
    RegexRule,
    Rule,
    SqlRule,
    UniquenessRule,
    run_checks,
)
from modelyard.errors import InvalidInput

RULES: TypeAdapter[list[Rule]] = TypeAdapter(list[Rule])


def store(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = root / "objects" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


TABLE = pa.table(
    {
        "id": pa.array([1, 2, 3, 3, 4, 5, 5, 5, None, None]),
        "age": pa.array([25, 130, -1, 40, None, 18, 65, 30, 50, 99]),
        "score": pa.array([0.5, math.nan, 1.0, 0.0, None, 0.25, 2.0, 0.75, 0.1, 0.9]),
        "country": pa.array(["FR", "DE", "fr", None, "US", "FR", "XX", "DE", "FR", "FR"]),
        "email": pa.array(
            ["a@x.io", "b@x.io", "bad", None, "c@y.org", "d@x.io", "e@", "f@x.io", "g@x.io", "h"]
        ),
        "day": pa.array(
            pa.array(
                [
                    "2024-01-05",
                    "2023-12-31",
                    "2024-02-01",
                    None,
                    "2024-01-01",
                    "2024-01-31",
                    "2024-03-01",
                    "2024-01-15",
                    "2024-01-20",
                    "2024-01-02",
                ]
            ).cast(pa.date32())
        ),
        'odd "name"': pa.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 6]),
    }
)


@pytest.fixture
def src(tmp_path: Path) -> DataSource:
    buf = io.BytesIO()
    pq.write_table(TABLE, buf)
    return DataSource(files=[store(tmp_path, buf.getvalue())], format="parquet")


def check(src: DataSource, rule: dict[str, Any]) -> tuple[int, bool, str]:
    report = run_checks(src, RULES.validate_python([rule]))
    result = report.results[0]
    return result.failing_rows, result.passed, result.message


@pytest.mark.parametrize(
    ("rule", "failing"),
    [
        ({"type": "completeness", "column": "age"}, 1),
        ({"type": "completeness", "column": "country"}, 1),
        # Duplicated groups: id 3 (2 rows) and 5 (3 rows); nulls are not duplicates.
        ({"type": "uniqueness", "columns": ["id"]}, 5),
        ({"type": "uniqueness", "columns": ["id", 'odd "name"']}, 4),  # (3, 2) and (5, 4)
        ({"type": "uniqueness", "columns": ['odd "name"']}, 8),
        ({"type": "range", "column": "age", "min": 0, "max": 120}, 2),
        ({"type": "range", "column": "age", "min": 18, "max": 65, "inclusive": False}, 5),
        ({"type": "range", "column": "age", "min": 18}, 1),
        ({"type": "range", "column": "age", "max": 99}, 1),
        # NaN is outside every range (it would compare above any max in DuckDB).
        ({"type": "range", "column": "score", "min": 0.0, "max": 1.0}, 2),
        ({"type": "range", "column": "score", "min": 0.0}, 1),
        ({"type": "range", "column": "day", "min": "2024-01-01", "max": "2024-01-31"}, 3),
        ({"type": "allowed_values", "column": "country", "values": ["FR", "DE", "US"]}, 2),
        ({"type": "allowed_values", "column": "age", "values": [25, 40, 18]}, 6),
        ({"type": "regex", "column": "email", "pattern": r"[^@]+@[a-z]+\.[a-z]+"}, 3),
        ({"type": "regex", "column": "country", "pattern": "[A-Z]{2}"}, 1),
        ({"type": "regex", "column": "age", "pattern": "[0-9]+"}, 1),  # "-1"; cast to text
        ({"type": "sql", "name": "adult", "predicate": "age >= 18"}, 2),  # -1 and null
        ({"type": "sql", "name": "odd", "predicate": '"odd ""name""" >= 1'}, 0),
        # 130, 65 and 99 are above the mean; the null row makes the predicate null: a failure.
        ({"type": "sql", "name": "sub", "predicate": "age <= (SELECT avg(age) FROM data)"}, 4),
    ],
)
def test_failing_rows_are_exact(src: DataSource, rule: dict[str, Any], failing: int) -> None:
    got, passed, message = check(src, rule)
    assert got == failing
    assert passed == (failing == 0)
    assert message.startswith("passed" if passed else "failed")


def test_report_combines_rules_and_severities(src: DataSource) -> None:
    rules: list[Rule] = [
        CompletenessRule(column="age", min_ratio=0.8),
        UniquenessRule(columns=["id"], severity="warning", name="ids are unique"),
        RangeRule(column="age", min=-10, max=200),
        AllowedValuesRule(column="country", values=["FR"], severity="warning"),
    ]
    report = run_checks(src, rules)
    assert report.row_count == 10
    assert report.passed  # the failing rules are warnings
    names = [r.name for r in report.results]
    assert names == ["completeness(age)", "ids are unique", "range(age)", "allowed_values(country)"]
    completeness = report.results[0]
    assert completeness.passed and completeness.failing_rows == 1
    assert completeness.failing_ratio == pytest.approx(0.1)
    assert "90.00% present" in completeness.message
    assert [r.passed for r in report.results] == [True, False, True, False]
    strict = run_checks(
        src, [CompletenessRule(column="age"), RegexRule(column="email", pattern=".*")]
    )
    assert not strict.passed
    assert QualityReport.model_validate_json(strict.model_dump_json()) == strict


def test_rules_are_a_discriminated_union() -> None:
    parsed = RULES.validate_python(
        [
            {"type": "range", "column": "a", "min": 1},
            {"type": "sql", "name": "n", "predicate": "a > 1", "severity": "warning"},
        ]
    )
    assert isinstance(parsed[0], RangeRule) and isinstance(parsed[1], SqlRule)
    assert RULES.dump_python(parsed)[0]["type"] == "range"
    for bad in [
        {"type": "nope", "column": "a"},
        {"type": "range", "column": "a"},  # no bound
        {"type": "range", "column": "a", "min": 5, "max": 1},
        {"type": "completeness", "column": "a", "min_ratio": 1.5},
        {"type": "uniqueness", "columns": []},
        {"type": "sql", "predicate": "a > 1"},  # a sql rule needs a name
        {"type": "regex", "column": "a", "pattern": "x", "extra": 1},
        {"type": "allowed_values", "column": "a", "values": [], "severity": "info"},
    ]:
        with pytest.raises(ValidationError):
            RULES.validate_python([bad])


def test_unknown_columns_list_the_available_ones(src: DataSource) -> None:
    with pytest.raises(InvalidInput, match=r"unknown column.*'agee'") as err:
        run_checks(src, [RangeRule(column="agee", min=0)])
    assert err.value.details["available"] == TABLE.column_names
    with pytest.raises(InvalidInput, match="'nope'"):
        run_checks(src, [UniquenessRule(columns=["id", "nope"])])


def test_invalid_regex(src: DataSource) -> None:
    with pytest.raises(InvalidInput, match="invalid regular expression '\\(unclosed'"):
        run_checks(src, [RegexRule(column="email", pattern="(unclosed")])


@pytest.mark.parametrize(
    ("predicate", "problem"),
    [
        ("age >>> 3", "not valid"),
        ("agee > 3", "not valid.*agee"),
        ("age + 1", "must be a boolean expression; it yields BIGINT"),
        ("count(*) > 1", "not valid"),
        ("age > 1; DROP TABLE data", "single expression"),
        ("age > 1 --", "comments"),
    ],
)
def test_bad_sql_predicates(src: DataSource, predicate: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as err:
        run_checks(src, [SqlRule(name="p", predicate=predicate)])
    assert "rule 'p'" in err.value.message


def test_bound_that_does_not_fit_the_column(src: DataSource) -> None:
    with pytest.raises(InvalidInput, match=r"rule 'range\(day\)'.*not-a-date"):
        run_checks(src, [RangeRule(column="day", min="not-a-date")])


def test_sql_cannot_read_write_or_attach_files(src: DataSource, tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0\n")
    dataset_file = Path(src.files[0])
    before = dataset_file.read_bytes()
    attempts = [
        f"(SELECT count(*) FROM read_csv('{secret}')) > 0",
        "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0",
        f"(SELECT count(*) FROM read_parquet('{dataset_file}')) > 0",
        f"(SELECT count(*) FROM query('COPY data TO ''{tmp_path / 'out.csv'}''')) > 0",
        f"(SELECT count(*) FROM query('ATTACH ''{tmp_path / 'x.db'}'' AS x')) > 0",
        f"(SELECT count(*) FROM glob('{tmp_path}/*')) > 0",
        "age > 0; COPY data TO '/tmp/modelyard-stolen.csv'",
        "age > 0; ATTACH '/tmp/modelyard-x.db' AS x",
    ]
    for predicate in attempts:
        with pytest.raises(InvalidInput, match="rule 'evil'"):
            run_checks(src, [SqlRule(name="evil", predicate=predicate)])
    for leftover in [tmp_path / "out.csv", tmp_path / "x.db", Path("/tmp/modelyard-x.db")]:
        assert not leftover.exists()
    assert dataset_file.read_bytes() == before


def test_csv_source_and_empty_dataset(tmp_path: Path) -> None:
    csv = DataSource(files=[store(tmp_path, b"a,b\n1,x\n2,\n2,z\n")], format="csv")
    report = run_checks(
        csv,
        [
            CompletenessRule(column="b"),
            UniquenessRule(columns=["a"]),
            SqlRule(name="small", predicate="a < 2"),
        ],
    )
    assert [r.failing_rows for r in report.results] == [1, 2, 2]
    empty = DataSource(files=[store(tmp_path, b"a,b\n")], format="csv")
    report = run_checks(empty, [CompletenessRule(column="a"), UniquenessRule(columns=["a"])])
    assert report.passed and report.row_count == 0
    assert [r.failing_ratio for r in report.results] == [0.0, 0.0]
    assert run_checks(empty, []).passed
