"""CompareRuns' comma-separated lists keep their limits (up to 100 items, each a valid key
or run id of at most 250 / 40 characters) with a pattern that compiles cheaply."""

from __future__ import annotations

import pydantic
import pytest

from modelyard.tracking.schemas import CompareRuns


def test_lists_within_the_limits_are_accepted() -> None:
    req = CompareRuns(run_ids=",".join(f"r{i}" for i in range(100)), metrics="loss,acc/x:y")
    assert req.run_ids.count(",") == 99 and req.metrics == "loss,acc/x:y"
    assert CompareRuns(run_ids="a" * 40, metrics="k" * 250).metrics == "k" * 250


@pytest.mark.parametrize(
    "fields",
    [
        {"run_ids": ",".join(["r"] * 101)},
        {"run_ids": "a" * 41},
        {"run_ids": "a,,b"},
        {"run_ids": "a\n"},
        {"run_ids": "a", "metrics": "x," + "k" * 251},
        {"run_ids": "a", "metrics": ",".join(["m"] * 101)},
        {"run_ids": "a", "metrics": ".hidden"},
        {"run_ids": "a", "metrics": "loss,"},
    ],
)
def test_lists_past_the_limits_or_malformed_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(pydantic.ValidationError):
        CompareRuns(**fields)  # type: ignore[arg-type]
