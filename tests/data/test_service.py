"""Dataset operations against both metadata stores (``runtime`` fixture): numbering,
concurrency, atomicity and the inputs people register from."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sqlalchemy import func, select

import modelyard as my
from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.core.events import EventRow
from modelyard.data.store import DatasetVersionRow
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal


def sdk(runtime: Runtime) -> Client:
    return Client(EmbeddedTransport(runtime, local_principal()))


def test_concurrent_registrations_get_gapless_versions(runtime: Runtime) -> None:
    """Eight clients register the same new dataset at once: one creates it, none fails."""
    client = sdk(runtime)
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            client.datasets.register("busy", pa.table({"x": [i]}), profile=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    detail = client.datasets.get("busy")
    assert [v.version for v in detail.versions] == list(range(1, 9))
    assert detail.latest_version == 8


def test_every_registration_emits_one_event_with_the_change(runtime: Runtime) -> None:
    client = sdk(runtime)
    client.datasets.register("ev", pa.table({"x": [1]}), profile=False)
    with pytest.raises(my.InvalidInput):
        client.datasets.register("ev", pa.table({"x": [1]}), format="csv", profile=False)
    with runtime.db.transaction(write=False) as session:
        events = session.scalars(select(EventRow).order_by(EventRow.seq)).all()
        versions = session.scalar(select(func.count()).select_from(DatasetVersionRow))
    assert [(e.type, e.payload) for e in events] == [
        ("dataset.version_registered", {"dataset": "ev", "version": 1})
    ]
    assert versions == 1


def test_register_from_pandas_and_polars(runtime: Runtime) -> None:
    client = sdk(runtime)
    v = client.datasets.register("pd", pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}))
    assert v.row_count == 3 and [c.name for c in v.columns] == ["a", "b"]
    v = client.datasets.register("pl", pl.DataFrame({"a": [1.5, None], "t": ["u", "v"]}))
    assert v.row_count == 2 and v.profile is not None
    assert v.profile.columns[0].missing == 1
    with pytest.raises(my.InvalidInput, match="cannot register a dict"):
        client.datasets.register("bad", {"a": [1]})


def test_register_refuses_unsafe_or_unknown_files(runtime: Runtime, tmp_path: Path) -> None:
    client = sdk(runtime)
    ref = client.artifacts.upload(b"x,y\n1,2\n")
    from modelyard.data.schemas import DatasetFile, RegisterVersion

    for path in ["../escape.csv", "/etc/passwd", "a/%2e%2e/b.csv", "a\\b.csv"]:
        req = RegisterVersion(name="unsafe", files=[DatasetFile(path=path, digest=ref.digest)])
        with pytest.raises(my.InvalidInput):
            client.transport.call("datasets.register_version", req)
    req = RegisterVersion(name="unsafe", files=[DatasetFile(path="a.csv", digest="f" * 64)])
    with pytest.raises(my.InvalidInput, match="never uploaded"):
        client.transport.call("datasets.register_version", req)
    twice = [
        DatasetFile(path="a.csv", digest=ref.digest),
        DatasetFile(path="./a.csv", digest=ref.digest),
    ]
    with pytest.raises(my.InvalidInput, match="twice"):
        client.transport.call(
            "datasets.register_version", RegisterVersion(name="unsafe", files=twice)
        )
    with pytest.raises(my.NotFound):
        client.datasets.get("unsafe")
    link = tmp_path / "folder"
    link.mkdir()
    (link / "ok.csv").write_text("x\n1\n")
    (link / "sneaky.csv").symlink_to("/etc/hostname")
    with pytest.raises(my.InvalidInput, match="sneaky"):
        client.datasets.register("linked", link)
