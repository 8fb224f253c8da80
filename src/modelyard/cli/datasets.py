"""``modelyard datasets register|list|show|profile|diff|check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from modelyard.data.schemas import DatasetProfile, DatasetVersion

app = typer.Typer(
    help="Versioned datasets: register, profile, diff, check quality.", no_args_is_help=True
)


def _show_profile(profile: DatasetProfile) -> None:
    table(
        f"profile: {profile.row_count} rows",
        ["column", "type", "missing", "distinct≈", "min", "max", "mean", "std"],
        [
            (
                c.name,
                c.type,
                f"{c.missing} ({c.missing_ratio:.1%})",
                c.distinct_estimate,
                c.min,
                c.max,
                None if c.mean is None else f"{c.mean:.4g}",
                None if c.std is None else f"{c.std:.4g}",
            )
            for c in profile.columns
        ],
    )


def _show_version(v: DatasetVersion) -> None:
    console.print(
        f"[bold]{v.dataset}[/bold] v{v.version}  {v.format}, {v.row_count} rows, "
        f"{len(v.files)} file(s), {v.size_bytes} bytes, "
        f"by {v.created_by} at {v.created_at:%Y-%m-%d %H:%M:%S}"
    )
    table(
        "schema",
        ["column", "type", "nullable"],
        [(c.name, c.arrow_type, c.nullable) for c in v.columns],
    )
    if v.profile:
        _show_profile(v.profile)


@app.command("register")
@handle_errors
def register(
    name: str,
    path: Path = typer.Argument(..., help="A CSV/Parquet/JSON-lines file or a folder of them."),
    format: str | None = typer.Option(None, help="parquet, csv or jsonl (detected if omitted)."),
    description: str = typer.Option(""),
    profile: bool = typer.Option(True, help="Profile the data now."),
    header: bool | None = typer.Option(
        None,
        "--header/--no-header",
        help="CSV: the first row is (not) a header. Default: it is, unless it looks like data.",
        show_default=False,
    ),
    columns: str | None = typer.Option(
        None, help="CSV without a header: column names a,b,c (default _c0,_c1,...)."
    ),
) -> None:
    """Register a new version of a dataset."""
    names = None
    if columns is not None:
        names = [n.strip() for n in columns.split(",")]
        if not all(names):
            raise InvalidInput(f"--columns {columns!r} has an empty name; give NAME[,NAME...]")
    with client() as c:
        v = c.datasets.register(
            name,
            path,
            format=format,  # type: ignore[arg-type]  # validated by the operation
            description=description,
            profile=profile,
            header=header,
            columns=names,
        )
    emit(v, lambda: _show_version(v))


@app.command("list")
@handle_errors
def list_(prefix: str | None = typer.Option(None), limit: int = 100, offset: int = 0) -> None:
    """List datasets."""
    with client() as c:
        result = c.datasets.list(prefix, limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"datasets ({result.total})",
            ["name", "latest", "updated", "description"],
            [(d.name, d.latest_version, d.updated_at, d.description) for d in result.datasets],
        ),
    )


@app.command("show")
@handle_errors
def show(name: str, version: int | None = typer.Option(None, help="Default: latest.")) -> None:
    """Show a version: files, schema and profile."""
    with client() as c:
        v = c.datasets.version(name, version)
    emit(v, lambda: _show_version(v))


@app.command("profile")
@handle_errors
def profile_(name: str, version: int | None = typer.Option(None)) -> None:
    """(Re)compute a version's profile."""
    with client() as c:
        p = c.datasets.profile(name, version)
    emit(p, lambda: _show_profile(p))


@app.command("diff")
@handle_errors
def diff(name: str, base: int, other: int) -> None:
    """Compare two versions: schema, row count and distribution shift."""
    with client() as c:
        d = c.datasets.diff(name, base, other)
    emit(d)


def _load_rules(rules: str) -> list[dict[str, Any]]:
    text = Path(rules).read_text() if Path(rules).is_file() else rules
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"rules must be a JSON list or a JSON file: {exc}") from exc
    if not isinstance(data, list):
        raise InvalidInput("rules must be a JSON list of rule objects")
    return data


@app.command("check")
@handle_errors
def check(
    name: str,
    rules: str = typer.Option(..., help="A JSON file or inline JSON list of rules."),
    version: int | None = typer.Option(None),
    gate: bool = typer.Option(False, help="Exit with status 2 if the report fails."),
) -> None:
    """Run data-quality rules against a version and store the report."""
    with client() as c:
        report = c.datasets.check(name, _load_rules(rules), version)
    emit(
        report,
        lambda: table(
            f"quality report {report.id}: {'PASSED' if report.passed else 'FAILED'}",
            ["rule", "passed", "failing rows", "message"],
            [(r.name, r.passed, r.failing_rows, r.message) for r in report.report.results],
        ),
    )
    if gate and not report.passed:
        raise typer.Exit(2)
