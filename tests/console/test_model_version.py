"""The model version page warns when loading the version runs Python code that came
with it (``runs_user_code``: flavor ``python`` or ``pickle``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consolekit import Console, sign_in

from modelyard.flavors import save_model

HANDLER = "def load(model_dir):\n    return None\n\n\ndef predict(model, data):\n    return data\n"


def test_a_version_that_runs_its_own_code_carries_a_warning(
    console: Console, page: Any, tmp_path: Path
) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    save_model(tmp_path / "handler.py", tmp_path / "saved", flavor="python")
    version = console.admin.models.register(
        "handler-model", path=tmp_path / "saved", flavor="python"
    ).version
    assert console.admin.models.version("handler-model", version).runs_user_code

    sign_in(page, console.url, console.admin_token)
    page.goto(f"{console.url}/#/models/handler-model?version={version}")
    warning = page.wait_for_selector("[data-warning=runs-user-code]")
    assert warning.is_visible()
    assert "runs Python code that came with it" in warning.inner_text()
    assert "(flavor python)" in warning.inner_text()
    # A version in a format that loads no code of its own shows none.
    assert not console.admin.models.version("churn-model", 1).runs_user_code
    page.goto(f"{console.url}/#/models/churn-model?version=1")
    page.wait_for_selector("h2:text-is('churn-model v1')")
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-warning=runs-user-code]").count() == 0
