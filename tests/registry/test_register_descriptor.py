"""Registering a saved model folder takes its flavor and signature from its descriptor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.client.sdk import Client
from modelyard.errors import InvalidInput
from modelyard.flavors import save_model


def test_flavor_and_signature_come_from_the_folder(client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    table = pa.table({"tenure": x[:, 0], "spend": x[:, 1]})
    model = LogisticRegression().fit(table.to_pandas(), (x[:, 0] > 0).astype(int))
    save_model(model, tmp_path / "m", sample_input=table.to_pandas())
    version = client.models.register("churn", path=tmp_path / "m")
    assert version.flavor == "sklearn"
    assert [(t.name, t.type) for t in version.signature.inputs] == [
        ("tenure", "float64"),
        ("spend", "float64"),
    ]
    assert version.signature.outputs  # inferred from a sample prediction

    assert version.runs_user_code is False
    # A label that disagrees with the content is refused, naming both (issue 13 item 5).
    with pytest.raises(InvalidInput, match=r"flavor 'python' does not match.*'sklearn'"):
        client.models.register("churn", path=tmp_path / "m", flavor="python")
    assert client.models.get("churn").latest_version == 1
    same = client.models.register("churn", path=tmp_path / "m", flavor="sklearn")
    assert same.flavor == "sklearn"


def test_a_file_without_a_flavor_is_refused(client: Client, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01")
    with pytest.raises(InvalidInput, match="flavor is required"):
        client.models.register("opaque", path=tmp_path / "weights.bin")
    assert client.models.list().total == 0
