"""The example in docs/batch-transform.md runs as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "batch-transform.md"


def test_the_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    [example] = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    exec(compile(example, DOC.name, "exec"), {"__name__": "__main__"})
    output = capsys.readouterr().out
    assert "Completed 1000 1000 0" in output
    assert "predictions: customers-predictions v1" in output
    assert "'customer_id': 0, 'prediction'" in output
