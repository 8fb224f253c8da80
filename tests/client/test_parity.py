"""The same SDK behaviour through the embedded and the HTTP transport (``client`` fixture)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import modelyard as my
from modelyard.client.sdk import Client
from modelyard.data.schemas import QualityGateFailed


def _table(n: int = 200, shift: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "id": list(range(n)),
            "amount": [float(i % 50) + shift for i in range(n)],
            "country": [["jp", "us", "de"][i % 3] for i in range(n)],
            "email": [f"user{i}@example.com" if i % 10 else None for i in range(n)],
        }
    )


def test_register_from_arrow_then_read_back(client: Client) -> None:
    v = client.datasets.register("customers", _table())
    assert (v.dataset, v.version, v.format, v.row_count) == ("customers", 1, "parquet", 200)
    assert [c.name for c in v.columns] == ["id", "amount", "country", "email"]
    assert v.profile is not None
    email = next(c for c in v.profile.columns if c.name == "email")
    assert email.missing == 20
    assert client.datasets.to_arrow("customers").num_rows == 200


def test_versions_are_numbered_in_order(client: Client, tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    pacsv.write_csv(_table(50), csv)
    assert client.datasets.register("orders", csv).version == 1
    assert client.datasets.register("orders", _table(60), profile=False).version == 2
    detail = client.datasets.get("orders")
    assert detail.latest_version == 2
    assert [(s.version, s.format, s.row_count) for s in detail.versions] == [
        (1, "csv", 50),
        (2, "parquet", 60),
    ]
    assert client.datasets.version("orders").version == 2
    assert client.datasets.version("orders", 1).format == "csv"
    assert client.datasets.version("orders", 2).profile is None
    profile = client.datasets.profile("orders", 2)
    assert profile.row_count == 60
    assert client.datasets.version("orders", 2).profile == profile


def test_register_folder_and_download_roundtrip(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    (folder / "2026").mkdir(parents=True)
    pacsv.write_csv(_table(10), folder / "a.csv")
    pacsv.write_csv(_table(15), folder / "2026" / "b.csv")
    v = client.datasets.register("parts", folder)
    assert sorted(f.path for f in v.files) == ["2026/b.csv", "a.csv"]
    assert v.row_count == 25
    out = client.datasets.download("parts", tmp_path / "out")
    assert (out / "a.csv").read_bytes() == (folder / "a.csv").read_bytes()
    assert (out / "2026" / "b.csv").read_bytes() == (folder / "2026" / "b.csv").read_bytes()


def test_list_with_prefix_and_paging(client: Client) -> None:
    for name in ["sales.eu", "sales.us", "stock"]:
        client.datasets.register(name, _table(5), profile=False)
    listed = client.datasets.list("sales")
    assert listed.total == 2
    assert [d.name for d in listed.datasets] == ["sales.eu", "sales.us"]
    page = client.datasets.list(limit=1, offset=2)
    assert page.total == 3 and [d.name for d in page.datasets] == ["stock"]
    # LIKE wildcards in a prefix are taken literally.
    assert client.datasets.list("sales_").total == 0


def test_quality_check_report_and_gate(client: Client) -> None:
    client.datasets.register("people", _table())
    report = client.datasets.check(
        "people",
        [
            {"type": "completeness", "column": "email"},
            {"type": "range", "column": "amount", "min": 0, "max": 100},
            {"type": "allowed_values", "column": "country", "values": ["jp", "us", "de"]},
        ],
    )
    assert not report.passed
    by_type = {r.rule.type: r for r in report.report.results}
    assert by_type["completeness"].failing_rows == 20
    assert by_type["range"].passed and by_type["allowed_values"].passed
    with pytest.raises(QualityGateFailed):
        report.raise_if_failed()
    assert [r.id for r in client.datasets.reports("people").reports] == [report.id]


def test_diff_flags_the_shifted_column(client: Client) -> None:
    client.datasets.register("drift", _table(500))
    client.datasets.register("drift", _table(500, shift=40.0).drop_columns(["email"]))
    d = client.datasets.diff("drift", 1, 2)
    assert (d.row_count_a, d.row_count_b, d.row_count_delta) == (500, 500, 0)
    assert [c.name for c in d.schema_changes.removed] == ["email"]
    shifted = {c.name: c.shifted for c in d.columns}
    assert shifted["amount"] is True
    assert shifted["country"] is False


def test_errors_are_the_same_classes(client: Client, tmp_path: Path) -> None:
    with pytest.raises(my.NotFound, match="'nope'"):
        client.datasets.get("nope")
    client.datasets.register("one", _table(5), profile=False)
    with pytest.raises(my.NotFound, match="no version 7"):
        client.datasets.version("one", 7)
    with pytest.raises(my.InvalidInput):
        client.datasets.check("one", [{"type": "range", "column": "no_such_column", "min": 0}])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(my.InvalidInput):
        client.datasets.register("bad", bad)
    # Nothing was created by the failed registration.
    with pytest.raises(my.NotFound):
        client.datasets.get("bad")


def test_artifacts_roundtrip_and_audit(client: Client, tmp_path: Path) -> None:
    ref = client.artifacts.upload(b"hello modelyard")
    assert client.artifacts.read_bytes(ref.digest) == b"hello modelyard"
    assert client.artifacts.stat(ref.digest).size == 15
    client.artifacts.download(ref.digest, tmp_path / "x" / "hello.txt")
    assert (tmp_path / "x" / "hello.txt").read_text() == "hello modelyard"
    with pytest.raises(my.NotFound):
        client.artifacts.stat("0" * 64)
    events = client.audit.list().events
    assert events[0].operation == "artifacts.upload" and events[0].result == "ok"
    assert events[0].actor == "local"
