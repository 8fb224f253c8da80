"""Helpers shared by the CLI's command groups: the client, output, error reporting."""

from __future__ import annotations

import functools
import json
import sys
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from modelyard.errors import ModelyardError, invalid_input_from

if TYPE_CHECKING:
    from pydantic import BaseModel

    from modelyard.client.sdk import Client

# Command modules import only what ``--help`` needs at the top (typer, rich); the SDK and
# the schemas are imported by the commands that run. tests/cli/test_cli_imports.py keeps
# ``modelyard --help`` and remote listing free of the data stack.

console = Console()
err_console = Console(stderr=True)
P = ParamSpec("P")
R = TypeVar("R")

_state: dict[str, Any] = {"url": None, "token": None, "home": None, "json": False, "wide": False}


def configure(
    url: str | None, token: str | None, home: str | None, as_json: bool, wide: bool = False
) -> None:
    _state.update(url=url, token=token, home=home, json=as_json, wide=wide)


def _httpx_cli(*args: Any, **kwargs: Any) -> Any:
    """httpx's own command line, imported when it is called (see :func:`_defer_httpx_cli`)."""
    sys.modules.pop("httpx._main", None)
    from httpx._main import main

    return main(*args, **kwargs)


def _defer_httpx_cli() -> None:
    """Keep ``import httpx`` from importing httpx's command line (``httpx._main``).

    httpx imports it, for its ``httpx`` console script, whenever click, rich and pygments are
    installed, as they are beside this CLI: click, pygments and rich's progress and syntax
    modules, ~25 ms of every command that calls a server. In this process a stand-in takes
    its place, whose ``main`` imports and runs the real one; ``httpx.main`` still works.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")
    stand_in.main = _httpx_cli  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


def client() -> Client:
    _defer_httpx_cli()
    from modelyard.client.sdk import connect

    return connect(_state["url"], token=_state["token"], home=_state["home"])


def as_json() -> bool:
    return bool(_state["json"])


def emit(model: BaseModel | dict[str, Any], render: Callable[[], None] | None = None) -> None:
    """Print JSON with --json (or when there is no table renderer), else the table."""
    if as_json() or render is None:
        data = model if isinstance(model, dict) else model.model_dump(mode="json")
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        render()


_UNBOUNDED = 1_000_000


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table: fitted to the terminal, or at its full width (no cell cut or wrapped)
    when stdout is not a terminal (a pipe, a file) or with ``--wide``."""
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    if console.is_terminal and not _state["wide"]:
        console.print(t)
        return
    # Console.print never renders wider than the console, so use one wider than any table:
    # a table that does not expand is drawn at its natural width (and its title centred on
    # it) whatever the console's width, and lines are not padded to it.
    Console(file=console.file, width=_UNBOUNDED).print(t)


def _print_error(code: str, message: str) -> None:
    """One error line; the message is the server's or the user's text, never markup (a
    message quoting ``[...]`` would otherwise be parsed by rich, or raise MarkupError)."""
    from rich.markup import escape

    err_console.print(f"[red]error[/red] ({escape(code)}): {escape(message)}", highlight=False)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a modelyard error into a one-line message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ModelyardError as exc:
            _print_error(exc.code, exc.message)
            raise typer.Exit(1) from exc
        except Exception as exc:
            # pydantic is imported by whatever raised this, not by every command's --help.
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):
                raise
            message = invalid_input_from(exc).message
            _print_error("invalid_input", message)
            raise typer.Exit(1) from exc

    return wrapper
