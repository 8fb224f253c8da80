"""``modelyard models register|list|describe|versions|approve|reject|alias|history``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from modelyard.registry.schemas import ModelVersion, Status

app = typer.Typer(
    help="Model registry: versions, approval, aliases such as production.",
    no_args_is_help=True,
)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} {item!r} must be NAME=VALUE")
        out[key] = value
    return out


def _metrics(values: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in _pairs(values, "metric").items():
        try:
            out[key] = float(value)
        except ValueError:
            raise InvalidInput(f"metric {key!r} must be a number, not {value!r}") from None
    return out


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object given inline or as ``@file.json``."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {what} file {text[1:]!r}: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _when(value: Any) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _show_version(v: ModelVersion) -> None:
    aliases = f"  aliases: {', '.join(v.aliases)}" if v.aliases else ""
    console.print(
        f"[bold]{v.name} v{v.version}[/bold]  {v.flavor}  [bold]{v.status}[/bold]{aliases}",
        highlight=False,
    )
    if v.runs_user_code:
        console.print(
            f"  [bold]runs user code[/bold]: loading it runs the Python code packaged with "
            f"the model (flavor {v.flavor}); review that code before approving or deploying",
            highlight=False,
        )
    if v.status_by:
        reason = f": {v.status_reason}" if v.status_reason else ""
        console.print(f"  {v.status} by {v.status_by} at {_when(v.status_at)}{reason}")
    console.print(
        f"  artifact {v.artifact_digest} ({v.artifact_size} bytes"
        f"{', ' + v.artifact_filename if v.artifact_filename else ', folder archive'})",
        highlight=False,
    )
    console.print(f"  registered by {v.created_by} at {_when(v.created_at)}", highlight=False)
    if v.source_run_id or v.source_job_id:
        console.print(f"  from run {v.source_run_id or '-'}, job {v.source_job_id or '-'}")
    if v.description:
        console.print(f"  {v.description}", highlight=False)
    if v.metrics:
        table("metrics", ["name", "value"], [(k, f"{m:.6g}") for k, m in v.metrics.items()])
    if v.signature.inputs or v.signature.outputs:
        table(
            "signature",
            ["", "name", "type", "shape"],
            [("in", s.name, s.type, s.shape) for s in v.signature.inputs]
            + [("out", s.name, s.type, s.shape) for s in v.signature.outputs],
        )
    card = [(k, t) for k, t in v.card.model_dump(exclude={"other"}).items() if t]
    card += list(v.card.other.items())
    if card:
        table("model card", ["section", "text"], card)


@app.command("register")
@handle_errors
def register(
    name: str,
    source: str | None = typer.Argument(
        None, help="A file, a folder (packed as .tar.gz) or an uploaded digest."
    ),
    flavor: str | None = typer.Option(
        None,
        help="sklearn, xgboost, lightgbm, onnx, torchscript, python (a handler that runs "
        "its code), pickle, builtin:<algorithm>. Taken from the model when it names one "
        "(a descriptor, code/inference.py); refused when it disagrees.",
    ),
    metric: list[str] = typer.Option([], "--metric", "-m", help="NAME=NUMBER (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="NAME=VALUE (repeatable)."),
    run_id: str | None = typer.Option(None, "--run-id", help="The tracked run it came from."),
    job_id: str | None = typer.Option(
        None, "--job-id", help="The training job it came from (its model if no SOURCE)."
    ),
    signature: str | None = typer.Option(
        None, help='JSON or @file: {"inputs": [{"name", "type", "shape"}], "outputs": [...]}'
    ),
    card: str | None = typer.Option(
        None, help="JSON or @file: intended_use, evaluation, limitations..."
    ),
    intended_use: str | None = typer.Option(None, help="Model card: intended use."),
    description: str = typer.Option("", help="Free text."),
    entry_point: str | None = typer.Option(
        None,
        "--entry-point",
        help="A SageMaker inference handler (model_fn, input_fn, predict_fn, output_fn) to "
        "serve the model with: packaged with it as code/ (flavor python), as SageMaker's "
        "Model(entry_point=...) does. A path inside --source-dir, else a .py file.",
    ),
    source_dir: Path | None = typer.Option(
        None, "--source-dir", help="The handler's folder (uploaded as the model's code/)."
    ),
) -> None:
    """Register the next version of a model (pending approval)."""
    card_data = _json_object(card, "--card") or {}
    if intended_use is not None:
        card_data["intended_use"] = intended_use
    from modelyard.registry.schemas import DIGEST

    artifact = path = None
    if source is not None:
        if Path(source).exists():
            path = source
        elif re.fullmatch(DIGEST, source):
            artifact = source
        else:
            raise InvalidInput(f"{source!r} is neither an existing file or folder nor a digest")
    with client() as c:
        version = c.models.register(
            name,
            flavor=flavor,
            artifact=artifact,
            path=path,
            signature=_json_object(signature, "--signature"),
            metrics=_metrics(metric),
            run_id=run_id,
            job_id=job_id,
            card=card_data,
            description=description,
            tags=_pairs(tag, "tag"),
            entry_point=entry_point,
            source_dir=source_dir,
        )
    emit(version, lambda: _show_version(version))


@app.command("list")
@handle_errors
def list_models(prefix: str | None = typer.Option(None), limit: int = 100, offset: int = 0) -> None:
    """List models."""
    with client() as c:
        result = c.models.list(prefix, limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"models ({result.total})",
            ["name", "latest", "aliases", "created by", "updated"],
            [
                (
                    m.name,
                    m.latest_version,
                    ", ".join(f"{a}=v{v}" for a, v in m.aliases.items()),
                    m.created_by,
                    _when(m.updated_at),
                )
                for m in result.models
            ],
        ),
    )


@app.command("describe")
@handle_errors
def describe(
    name: str,
    version: str | None = typer.Argument(
        None, help="A number, an alias or 'latest' (else the model group)."
    ),
) -> None:
    """Describe a model, or one of its versions."""
    with client() as c:
        if version is None:
            model = c.models.get(name)
            emit(
                model,
                lambda: console.print(
                    f"[bold]{model.name}[/bold]  {model.latest_version} versions  aliases: "
                    + (", ".join(f"{a}=v{v}" for a, v in model.aliases.items()) or "none")
                    + (f"\n  {model.description}" if model.description else ""),
                    highlight=False,
                ),
            )
            return
        found = c.models.version(name, version)
    emit(found, lambda: _show_version(found))


@app.command("versions")
@handle_errors
def versions(
    name: str,
    status: str | None = typer.Option(None, help="PendingManualApproval, Approved or Rejected."),
    limit: int = 100,
    offset: int = 0,
) -> None:
    """List a model's versions, newest first."""
    allowed = ("PendingManualApproval", "Approved", "Rejected")
    if status is not None and status not in allowed:
        raise InvalidInput(f"status {status!r} is not one of {', '.join(allowed)}")
    wanted = cast("Status | None", status)
    with client() as c:
        result = c.models.versions(name, status=wanted, limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"{name} versions ({result.total})",
            ["version", "status", "aliases", "flavor", "metrics", "registered by", "at"],
            [
                (
                    v.version,
                    v.status,
                    ", ".join(v.aliases),
                    v.flavor,
                    ", ".join(f"{k}={m:.4g}" for k, m in list(v.metrics.items())[:4]),
                    v.created_by,
                    _when(v.created_at),
                )
                for v in result.versions
            ],
        ),
    )


@app.command("approve")
@handle_errors
def approve(name: str, version: int, reason: str = typer.Option("", help="Why.")) -> None:
    """Approve a version (needs the models.approve permission)."""
    with client() as c:
        found = c.models.approve(name, version, reason=reason)
    emit(found, lambda: _show_version(found))


@app.command("reject")
@handle_errors
def reject(
    name: str, version: int, reason: str = typer.Option(..., help="Why (required).")
) -> None:
    """Reject a version, or revoke its approval (needs models.approve)."""
    with client() as c:
        found = c.models.reject(name, version, reason=reason)
    emit(found, lambda: _show_version(found))


@app.command("alias")
@handle_errors
def alias(
    name: str,
    alias_name: str = typer.Argument(..., metavar="ALIAS"),
    version: int | None = typer.Argument(None, help="The version to point at."),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias instead."),
) -> None:
    """Point an alias (production, staging...) at a version, or --delete it."""
    if delete == (version is not None):
        raise InvalidInput("give a VERSION to point the alias at, or --delete (not both)")
    with client() as c:
        if version is None:
            result = c.models.delete_alias(name, alias_name)
            message = f"{name}: alias {alias_name} removed (was v{result.version})"
        else:
            result = c.models.set_alias(name, alias_name, version)
            before = "" if result.previous_version is None else f" (was v{result.previous_version})"
            message = f"{name}: {alias_name} -> v{result.version}{before}"
    emit(result, lambda: console.print(message, highlight=False))


@app.command("history")
@handle_errors
def history(
    name: str,
    version: int | None = typer.Option(None, help="Only this version."),
    limit: int = 100,
    offset: int = 0,
) -> None:
    """Every registration, approval decision and alias change, oldest first."""
    with client() as c:
        result = c.models.history(name, version=version, limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"{name} history ({result.total})",
            ["#", "time", "version", "change", "from", "to", "by", "reason"],
            [
                (
                    e.seq,
                    _when(e.time),
                    e.version,
                    e.kind if e.alias is None else f"alias {e.alias}",
                    e.old,
                    e.new,
                    e.actor,
                    e.reason,
                )
                for e in result.entries
            ],
        ),
    )
