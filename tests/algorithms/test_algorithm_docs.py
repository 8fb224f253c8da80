"""docs/algorithms.md is generated from the hyperparameter declarations."""

from __future__ import annotations

from pathlib import Path

from modelyard.algorithms import ALGORITHMS
from modelyard.algorithms._docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"


def test_docs_match_the_declarations() -> None:
    assert DOCS.read_text(encoding="utf-8") == render(), (
        "docs/algorithms.md is stale: run "
        "`.venv/bin/python -m modelyard.algorithms._docs > docs/algorithms.md`"
    )


def test_every_hyperparameter_is_documented() -> None:
    text = render()
    for info in ALGORITHMS.values():
        assert f"## {info.name}" in text
        for name, field in info.hyperparameters.model_fields.items():
            assert field.description, f"{info.name}.{name} has no description"
            assert f"| `{field.alias or name}` |" in text
