"""An error's message is printed as text: brackets in it are not rich markup."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from modelyard.cli.common import handle_errors
from modelyard.errors import InvalidInput


@pytest.mark.parametrize("message", ["column '[/]' is unknown", "expected [bold]x[/bold] or [y"])
def test_an_error_message_with_brackets_is_printed_as_it_is(message: str) -> None:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def fail() -> None:
        raise InvalidInput(message)

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1, result.output
    assert f"error (invalid_input): {message}" in result.output
