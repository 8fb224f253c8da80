"""``modelyard jobs submit|list|describe|logs|stop|metrics``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from modelyard.jobs.schemas import Job

app = typer.Typer(
    help="Training and processing jobs: submit, follow logs, stop.", no_args_is_help=True
)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} {item!r} must be NAME=VALUE")
        out[key] = value
    return out


def _hyperparameter(text: str) -> Any:
    """``0.1`` → float, ``10`` → int, ``true`` → bool, anything else → the string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def _show_job(job: Job) -> None:
    console.print(
        f"[bold]{job.id}[/bold] {job.name}  {job.kind}  [bold]{job.state}[/bold] "
        f"({job.state_reason})  backend {job.backend}"
    )
    if job.failure_reason:
        console.print(f"[red]failure:[/red] {job.failure_reason}", highlight=False)
    table(
        "attempts",
        ["#", "state", "exit", "cpu s", "peak RSS MiB", "wall s", "failure"],
        [
            (
                a.number,
                a.state,
                a.exit_code if a.signal is None else f"signal {a.signal}",
                None if a.usage is None else f"{a.usage.cpu_seconds:.2f}",
                None if a.usage is None else f"{a.usage.peak_rss_bytes / 2**20:.1f}",
                None if a.usage is None else f"{a.usage.wall_seconds:.2f}",
                a.failure_reason,
            )
            for a in job.attempt_list
        ],
    )
    if job.model:
        console.print(f"model: {job.model.digest} ({job.model.size} bytes, model.tar.gz)")
    for out in job.outputs:
        console.print(f"output: {out.path} {out.digest} ({out.size} bytes)")
    for name, value in job.final_metrics.items():
        console.print(f"metric {name} = {value:g}")


@app.command("submit")
@handle_errors
def submit(
    entry_point: str | None = typer.Option(None, "--entry-point", "-e", help="Script to run."),
    source_dir: str | None = typer.Option(None, help="Folder uploaded with the script."),
    algorithm: str | None = typer.Option(None, help="A built-in algorithm instead."),
    kind: str = typer.Option("training", help="training or processing."),
    name: str | None = typer.Option(None, help="Display name."),
    hp: list[str] = typer.Option([], "--hp", help="Hyperparameter NAME=VALUE (repeatable)."),
    input_: list[str] = typer.Option(
        [], "--input", help="Channel NAME=dataset[:version] | digest | ./path (repeatable)."
    ),
    input_mode: str = typer.Option("File", help="File or FastFile."),
    arg: list[str] = typer.Option([], "--arg", help="Extra argument (repeatable)."),
    env: list[str] = typer.Option([], "--env", help="Environment NAME=VALUE (repeatable)."),
    metric: list[str] = typer.Option([], "--metric", help="Metric NAME=REGEX (repeatable)."),
    cpus: int = typer.Option(1),
    memory_mb: int | None = typer.Option(None),
    gpus: int = typer.Option(0),
    max_runtime: int = typer.Option(86_400, help="Seconds per attempt."),
    max_attempts: int = typer.Option(1, help="Attempts in all (retries + 1)."),
    backend: str = typer.Option("local"),
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the log until it ends."),
) -> None:
    """Submit a job (uploading the script or source folder) and print it."""
    from modelyard.client.estimators import Estimator, Processor

    if kind not in ("training", "processing"):
        raise InvalidInput(f"kind {kind!r} must be training or processing")
    with client() as c:
        runner = (Estimator if kind == "training" else Processor)(
            entry_point,
            source_dir,
            algorithm=algorithm,
            hyperparameters={k: _hyperparameter(v) for k, v in _pairs(hp, "--hp").items()},
            arguments=arg,
            environment=_pairs(env, "--env"),
            backend=backend,
            cpus=cpus,
            memory_mb=memory_mb,
            gpus=gpus,
            max_runtime_s=max_runtime,
            max_attempts=max_attempts,
            metric_definitions=[
                {"name": k, "regex": v} for k, v in _pairs(metric, "--metric").items()
            ],
            input_mode=input_mode,  # type: ignore[arg-type]  # validated by the operation
            name=name,
            client=c,
        )
        inputs = _pairs(input_, "--input")
        if isinstance(runner, Estimator):
            job = runner.fit(inputs, wait=wait)
        else:
            job = runner.run(inputs, wait=wait)
    emit(job, lambda: _show_job(job))


@app.command("list")
@handle_errors
def list_(
    state: str | None = typer.Option(None, help="Pending, Starting, Running, Completed…"),
    kind: str | None = typer.Option(None, help="training or processing."),
    limit: int = 100,
    offset: int = 0,
) -> None:
    """List jobs, newest first."""
    with client() as c:
        result = c.jobs.list(state, kind, limit=limit, offset=offset)  # type: ignore[arg-type]
    emit(
        result,
        lambda: table(
            f"jobs ({result.total})",
            ["id", "name", "kind", "state", "attempts", "created", "ended"],
            [
                (j.id, j.name, j.kind, j.state, j.attempts, j.created_at, j.ended_at)
                for j in result.jobs
            ],
        ),
    )


@app.command("describe")
@handle_errors
def describe(job_id: str) -> None:
    """A job's state, attempts (exit, CPU, memory, wall time), model and outputs."""
    with client() as c:
        job = c.jobs.get(job_id)
    emit(job, lambda: _show_job(job))


@app.command("logs")
@handle_errors
def logs(
    job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    attempt: int | None = typer.Option(None, help="Only this attempt's lines."),
) -> None:
    """Print a job's log."""
    with client() as c:
        if follow:
            for line in c.jobs.follow(job_id, attempt=attempt):
                typer.echo(line.text)
            return
        after = 0
        while True:
            page = c.jobs.logs(job_id, after_seq=after, attempt=attempt)
            for line in page.lines:
                typer.echo(line.text)
            if not page.lines:
                return
            after = page.next_after_seq


@app.command("stop")
@handle_errors
def stop(job_id: str) -> None:
    """Stop a job (a running one gets SIGTERM, then SIGKILL after a grace period)."""
    with client() as c:
        job = c.jobs.stop(job_id)
    emit(job, lambda: console.print(f"{job.id}: {job.state} ({job.state_reason})"))


@app.command("metrics")
@handle_errors
def metrics(job_id: str, name: str | None = typer.Option(None)) -> None:
    """A job's metric points."""
    with client() as c:
        result = c.jobs.metrics(job_id, name)
    emit(
        result,
        lambda: table(
            "metrics",
            ["name", "value", "step", "attempt", "source", "time"],
            [(p.name, f"{p.value:g}", p.step, p.attempt, p.source, p.time) for p in result.points],
        ),
    )
