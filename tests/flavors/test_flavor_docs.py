"""The examples in docs/flavors.md run as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "flavors.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
# The API overview block uses names (model, X) it does not define; the rest are complete.
EXAMPLES = [block for block in BLOCKS if "import tempfile" in block]


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(EXAMPLES[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "__main__"})
    output = capsys.readouterr().out
    assert output.strip()
    if "UntrustedModel" in EXAMPLES[index]:
        refusals = ("Homemade", "registry's SHA-256", "torch.save pickle, not a TorchScript")
        assert any(refusal in output for refusal in refusals)
