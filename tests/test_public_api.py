"""`import modelyard as my` is the SDK's one public surface."""

from __future__ import annotations

import subprocess
import sys

import modelyard as my


def test_all_names_resolve() -> None:
    for name in my.__all__:
        assert getattr(my, name) is not None, name
    assert callable(my.connect)


def test_importing_the_package_does_not_load_the_sdk() -> None:
    code = (
        "import sys, modelyard; print('modelyard.runtime' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
