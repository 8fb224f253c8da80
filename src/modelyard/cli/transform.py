"""``modelyard transform run|describe|list|finalize``: batch transform from the shell."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from modelyard.transform.schemas import Transform

app = typer.Typer(
    help="Batch transform: a model version's predictions for a dataset version.",
    no_args_is_help=True,
)

_JOIN = {"none": "None", "input": "Input"}


def _columns(text: str | None) -> list[str] | None:
    """``a,b,c`` → ["a", "b", "c"] (None when not given)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InvalidInput(f"{text!r} names no column; give NAME[,NAME…]")
    return names


def _show(t: Transform) -> None:
    source = f"{t.dataset} v{t.dataset_version}" if t.dataset else "uploaded files"
    console.print(
        f"[bold]{t.job_id}[/bold] {t.name}  model {t.model} v{t.model_version} on {source}  "
        f"[bold]{t.state}[/bold]"
    )
    if t.rows_in is not None:
        console.print(f"rows: {t.rows_in} in, {t.rows_out} out, {t.error_count} failed")
    if t.output_version is not None:
        console.print(f"output: dataset {t.output_dataset} v{t.output_version}")
    elif t.state == "Completed" and not t.finalized:
        console.print(f"output: dataset {t.output_dataset} (being registered)")
    if t.failure_reason:
        console.print(f"[red]failure:[/red] {t.failure_reason}", highlight=False)
    if t.errors:
        table(
            f"failed records (first {len(t.errors)})",
            ["file", "row", "error"],
            [(e.file, e.row, e.error) for e in t.errors],
        )


@app.command("run")
@handle_errors
def run(
    model: str = typer.Option(..., "--model", "-m", help="Registered model name."),
    version: str = typer.Option("latest", help="Version number, alias or 'latest'."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Input dataset."),
    dataset_version: int | None = typer.Option(None, help="Input version (default: latest)."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output dataset (default: <dataset>-predictions)."
    ),
    join_source: str = typer.Option("none", help="none, or input: keep the input columns."),
    input_filter: str | None = typer.Option(None, help="Model input columns: a,b,c."),
    output_filter: str | None = typer.Option(None, help="Output columns to keep: id,prediction."),
    probabilities: bool = typer.Option(False, help="Add probability_<class> columns."),
    batch_size: int = typer.Option(10_000, help="Rows per mini-batch."),
    split_type: str | None = typer.Option(None, help="Line, Record or None."),
    max_concurrent: int = typer.Option(1, help="Mini-batches predicted at once per worker."),
    instance_count: int = typer.Option(1, help="Worker processes (each every n-th file)."),
    accept: str = typer.Option("parquet", help="Output format: parquet, csv or jsonl."),
    on_error: str = typer.Option("continue", help="continue or stop at a failed record."),
    max_errors: int | None = typer.Option(None, help="Fail when more records failed."),
    cpus: int = typer.Option(1),
    memory_mb: int | None = typer.Option(None),
    backend: str = typer.Option("local"),
    name: str | None = typer.Option(None, help="The job's display name."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow progress until done."),
) -> None:
    """Run a model version over a dataset; the predictions become a new dataset version."""
    from modelyard.client.transform import Transformer

    join = _JOIN.get(join_source.lower())
    if join is None:
        raise InvalidInput(f"--join-source {join_source!r} must be none or input")
    with client() as c:
        transformer = Transformer(
            model,
            version,
            batch_size=batch_size,
            max_concurrent=max_concurrent,
            instance_count=instance_count,
            backend=backend,
            cpus=cpus,
            memory_mb=memory_mb,
            accept=accept,
            client=c,
        )
        result = transformer.transform(
            dataset,
            dataset_version,
            output_dataset=output,
            join_source=join,
            input_filter=_columns(input_filter),
            output_filter=_columns(output_filter),
            split_type=split_type,
            probabilities=probabilities,
            on_error=on_error,
            max_errors=max_errors,
            name=name,
            wait=wait,
            logs=wait,
        )
    emit(result, lambda: _show(result))


@app.command("describe")
@handle_errors
def describe(job_id: str) -> None:
    """A transform's state, counts, failed records and output version."""
    with client() as c:
        result = c.transforms.get(job_id)
    emit(result, lambda: _show(result))


@app.command("list")
@handle_errors
def list_(
    state: str | None = typer.Option(None, help="Pending, Running, Completed, Failed…"),
    limit: int = 100,
    offset: int = 0,
) -> None:
    """Batch transforms, newest first."""
    with client() as c:
        found = c.transforms.list(state=state, limit=limit, offset=offset)
    emit(
        found,
        lambda: table(
            f"transforms ({found.total})",
            ["job", "model", "input", "state", "rows", "failed", "output"],
            [
                (
                    t.job_id,
                    f"{t.model} v{t.model_version}",
                    f"{t.dataset} v{t.dataset_version}" if t.dataset else "files",
                    t.state,
                    t.rows_in,
                    t.error_count,
                    f"{t.output_dataset} v{t.output_version}" if t.output_version else "",
                )
                for t in found.transforms
            ],
        ),
    )


@app.command("finalize")
@handle_errors
def finalize(job_id: str) -> None:
    """Register a completed transform's output now (normally automatic)."""
    with client() as c:
        result = c.transforms.finalize(job_id)
    emit(result, lambda: _show(result))
