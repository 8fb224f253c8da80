"""Saving or loading a scikit-learn model never imports PyTorch.

skops' import walks scikit-learn's packages, and the vendored ``array_api_compat.torch``
imports PyTorch where it is installed (it is, for the TorchScript flavor): ~2 CPU-seconds
and ~180 MB in every model server replica and job that only needs scikit-learn. Checked
in a fresh interpreter, since this test process may have imported torch already.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
import numpy as np
from sklearn.linear_model import LogisticRegression
import modelyard.flavors as flavors

x = np.random.default_rng(0).normal(size=(40, 3))
model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
flavors.save_model(model, sys.argv[1], sample_input=x[:5])
loaded = flavors.load_model(sys.argv[1])
assert (loaded.predict(x) == model.predict(x)).all()
print("after load:", "torch" in sys.modules)
import sklearn.externals.array_api_compat.torch  # the refusal lasted only for skops' import
print("on demand:", "torch" in sys.modules)
"""


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is not installed, so there is nothing skops could pull in",
)
def test_sklearn_save_and_load_do_not_import_torch(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["after load: False", "on demand: True"]
