"""docs/architecture.md's "How to add a controller" and "How to react to an event"
examples run as they are (a fresh interpreter each, as a reader would run them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"


def example(section: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)
    assert len(blocks) == 1, f"{section}: expected one python example, found {len(blocks)}"
    return blocks[0]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("How to add a controller", "system:example.reviewer controller:example.reviewer"),
        ("How to react to an event", "'FINISHED'}"),
    ],
)
def test_the_example_runs(section: str, expected: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example(section))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout
