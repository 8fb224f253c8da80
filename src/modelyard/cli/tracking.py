"""``modelyard experiments list`` and ``modelyard runs list|describe|compare|artifacts``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table

if TYPE_CHECKING:
    from modelyard.tracking.schemas import Comparison, Run

experiments_app = typer.Typer(help="Experiments: groups of tracked runs.", no_args_is_help=True)
runs_app = typer.Typer(help="Tracked runs: params, metrics, tags.", no_args_is_help=True)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@experiments_app.command("list")
@handle_errors
def list_experiments(
    prefix: str | None = typer.Option(None), limit: int = 100, offset: int = 0
) -> None:
    """List experiments."""
    with client() as c:
        result = c.tracking.list_experiments(prefix, limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"experiments ({result.total})",
            ["name", "created by", "created at", "tags"],
            [
                (e.name, e.created_by, f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.tags or "")
                for e in result.experiments
            ],
        ),
    )


@runs_app.command("list")
@handle_errors
def list_runs(
    experiment: str | None = typer.Option(None, "--experiment", "-e"),
    filter: str = typer.Option("", "--filter", "-f", help="e.g. metrics.auc > 0.9"),
    order_by: str = typer.Option("", "--order-by", help="e.g. 'metrics.auc desc'"),
    limit: int = 100,
    offset: int = 0,
) -> None:
    """Search runs."""
    with client() as c:
        result = c.tracking.search_runs(
            experiment, filter, order_by=order_by, limit=limit, offset=offset
        )
    keys = sorted({k for r in result.runs for k in r.metrics})[:6]
    emit(
        result,
        lambda: table(
            f"runs ({result.total})",
            ["id", "experiment", "name", "status", "started", *keys],
            [
                (
                    r.id,
                    r.experiment,
                    r.name,
                    r.status,
                    f"{r.start_time:%Y-%m-%d %H:%M:%S}",
                    *(_fmt(r.metrics[k].latest) if k in r.metrics else "" for k in keys),
                )
                for r in result.runs
            ],
        ),
    )


def _show_run(r: Run) -> None:
    ended = f", ended {r.end_time:%Y-%m-%d %H:%M:%S}" if r.end_time else ""
    console.print(
        f"[bold]{r.id}[/bold] {r.name}  experiment {r.experiment}, {r.status}, "
        f"by {r.created_by}, started {r.start_time:%Y-%m-%d %H:%M:%S}{ended}",
        highlight=False,
    )
    if r.job_id:
        console.print(f"job {r.job_id}", highlight=False)
    if r.code_digest or r.git_commit:
        console.print(f"code {r.code_digest or '-'}  git {r.git_commit or '-'}", highlight=False)
    if r.notes:
        console.print(r.notes, markup=False, highlight=False)
    if r.inputs:
        table(
            "inputs",
            ["dataset", "version", "role"],
            [(i.dataset, i.version, i.context) for i in r.inputs],
        )
    table("params", ["key", "value"], sorted(r.params.items()))
    table("tags", ["key", "value"], sorted(r.tags.items()))
    table(
        "metrics",
        ["key", "latest", "step", "min", "max", "points"],
        [
            (k, _fmt(s.latest), s.step, _fmt(s.min), _fmt(s.max), s.count)
            for k, s in r.metrics.items()
        ],
    )


@runs_app.command("describe")
@handle_errors
def describe_run(run_id: str) -> None:
    """A run: its params, tags, metrics (latest, min, max), inputs and code."""
    with client() as c:
        run = c.tracking.get_run(run_id)
    emit(run, lambda: _show_run(run))


# The name this command had before `describe` (every other group says describe).
runs_app.command("show", hidden=True)(describe_run)


def _show_comparison(result: Comparison) -> None:
    ids = [r.id for r in result.runs]
    params = [
        (
            ("* " if k in result.differing_params else "  ") + k,
            *(r.params.get(k) for r in result.runs),
        )
        for k in result.param_keys
    ]
    table("params (* differ)", ["param", *ids], params)
    keys = sorted({k for r in result.runs for k in r.metrics})
    metrics = [
        (k, *(_fmt(r.metrics[k].latest) if k in r.metrics else "" for r in result.runs))
        for k in keys
    ]
    table("metrics (latest)", ["metric", *ids], metrics)


@runs_app.command("compare")
@handle_errors
def compare_runs(
    run_ids: list[str] = typer.Argument(..., help="The runs to compare (two or more)."),
    metric: list[str] = typer.Option(
        [], "--metric", "-m", help="Only this metric's history in --json (repeatable)."
    ),
) -> None:
    """Runs side by side: params (marking those that differ) and latest metrics."""
    with client() as c:
        result = c.tracking.compare(run_ids, metric or None)
    emit(result, lambda: _show_comparison(result))


@runs_app.command("artifacts")
@handle_errors
def list_run_artifacts(
    run_id: str,
    path: str = typer.Option("", "--path", "-p", help="Folder inside the run to list."),
) -> None:
    """List a run's output files (one folder level)."""
    with client() as c:
        result = c.tracking.list_artifacts(run_id, path or None)
    emit(
        result,
        lambda: table(
            f"artifacts of {result.run_id}" + (f" in {result.path}/" if result.path else ""),
            ["path", "size", "digest"],
            [
                (a.path + ("/" if a.is_dir else ""), "" if a.size is None else a.size, a.digest)
                for a in result.artifacts
            ],
        ),
    )
