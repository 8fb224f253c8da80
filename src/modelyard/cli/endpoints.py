"""``modelyard endpoints create|update|describe|list|invoke|delete|capture|rollouts``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from modelyard.endpoints.schemas import Endpoint

app = typer.Typer(
    help="Endpoints: variants of model versions behind a router; rollouts; data capture.",
    no_args_is_help=True,
)


def _autoscaling(
    min_replicas: int | None,
    max_replicas: int | None,
    target_in_flight: float | None,
    idle_seconds: float | None,
    autoscaling: str | None,
) -> dict[str, Any] | None:
    """The ``autoscaling`` dict from the JSON option and the single-field options."""
    out: dict[str, Any] = {}
    if autoscaling is not None:
        try:
            value = json.loads(autoscaling)
        except ValueError as exc:
            raise InvalidInput(f"--autoscaling is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidInput("--autoscaling must be a JSON object, e.g. '{\"max_replicas\": 4}'")
        out.update(value)
    fields = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "target_in_flight": target_in_flight,
        "idle_seconds": idle_seconds,
    }
    out.update({k: v for k, v in fields.items() if v is not None})
    return out or None


def _variants(
    model: str | None,
    version: str | None,
    variant: str,
    replicas: int,
    variants: str | None,
    autoscaling: dict[str, Any] | None = None,
    placement: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    if variants is not None:
        text = variants
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text()
            except OSError as exc:
                raise InvalidInput(f"cannot read --variants file {text[1:]!r}: {exc}") from exc
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"--variants is not valid JSON: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise InvalidInput("--variants must be a JSON list of objects")
        if autoscaling is not None:
            raise InvalidInput("with --variants, put 'autoscaling' in each variant's JSON")
        if placement is not None:
            raise InvalidInput("with --variants, put 'placement' in each variant's JSON")
        return value
    if model is None or version is None:
        raise InvalidInput("give --model and --version, or --variants JSON")
    spec: dict[str, Any] = {
        "name": variant,
        "model": model,
        "version": version,
        "replicas": replicas,
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    if placement is not None:
        spec["placement"] = placement
    return [spec]


def _placement(backend: str | None, num_cpus: float | None) -> dict[str, Any] | None:
    """The ``placement`` dict from --placement/--num-cpus (None: the default, local)."""
    if backend is None and num_cpus is None:
        return None
    out: dict[str, Any] = {"backend": backend or "local"}
    if num_cpus is not None:
        out["num_cpus"] = num_cpus
    return out


def _alarms(values: list[str]) -> list[dict[str, Any]]:
    out = []
    for item in values:
        metric, sep, threshold = item.partition("=")
        if not sep:
            raise InvalidInput(
                f"alarm {item!r} must be METRIC=THRESHOLD (error_rate, p99_latency_ms, "
                "or custom:NAME)"
            )
        try:
            value = float(threshold)
        except ValueError:
            raise InvalidInput(f"alarm threshold {threshold!r} is not a number") from None
        if metric.startswith("custom:"):
            out.append({"metric": "custom", "name": metric[7:], "threshold": value})
        else:
            out.append({"metric": metric, "threshold": value})
    return out


def _ms(value: float | None) -> str:
    """A latency for a table: ``80.8 ms`` (two decimals under 1 ms); blank when unknown."""
    if value is None:
        return ""
    return f"{value:.2f} ms" if value < 1 else f"{value:.1f} ms"


def _labels(ep: Endpoint) -> dict[str, str]:
    """Each variant's name in tables; during a rollout the old and new variants (which
    usually share a name) are marked ``(old)`` and ``(new)``."""
    labels = {v.id: v.name for v in ep.variants}
    ro = ep.rollout
    if ro is None or ro.state != "InProgress":
        return labels
    old = {v.id for v in ro.from_variants}
    new = {v.id for v in ro.to_variants}
    for v in ep.variants:
        if v.id in new and v.id not in old:
            labels[v.id] = f"{v.name} (new)"
        elif v.id in old and v.id not in new:
            labels[v.id] = f"{v.name} (old)"
    return labels


def _show(ep: Endpoint) -> None:
    message = f"  {ep.message}" if ep.message else ""
    names = _labels(ep)
    console.print(f"[bold]{ep.name}[/bold]  [bold]{ep.status}[/bold]{message}", highlight=False)
    table(
        "variants",
        [
            "name",
            "model",
            "version",
            "traffic",
            "replicas",
            "ready",
            "shadow",
            "requests",
            "errors",
            "p99",
        ],
        [
            (
                names[v.id],
                v.model,
                v.version,
                f"{ep.traffic.get(v.id, 0.0):.0%}",
                v.replicas,
                sum(1 for r in ep.replicas if r.variant_id == v.id and r.state == "Ready"),
                "yes" if v.shadow else "",
                ep.stats[v.id].requests if v.id in ep.stats else "",
                ep.stats[v.id].errors if v.id in ep.stats else "",
                _ms(ep.stats[v.id].p99_latency_ms) if v.id in ep.stats else "",
            )
            for v in ep.variants
        ],
    )
    for v in ep.variants:
        if v.placement is not None and v.placement.backend != "local":
            console.print(
                f"variant {names[v.id]} placement: {v.placement.backend}, "
                f"{v.placement.num_cpus:g} CPU per replica",
                highlight=False,
            )
        a = v.autoscaling
        if a is None:
            continue
        cold = f"; last cold start {v.last_cold_start_ms:g} ms" if v.last_cold_start_ms else ""
        console.print(
            f"variant {names[v.id]} autoscaling: {a.min_replicas}-{a.max_replicas} replicas, "
            f"target {a.target_in_flight:g} in flight per replica"
            + (f", to zero after {a.idle_seconds:g} s idle" if a.min_replicas == 0 else "")
            + cold,
            highlight=False,
        )
        if v.last_scaling:
            console.print(
                f"  last decision: {v.last_scaling} ({v.last_scaling_at})", highlight=False
            )
    table(
        "replicas",
        ["id", "variant", "state", "host", "port", "pid", "restarts", "message"],
        [
            (
                r.id,
                names.get(r.variant_id, r.variant_id),
                r.state,
                r.host,
                r.port,
                r.pid,
                r.restarts,
                r.message[:80],
            )
            for r in ep.replicas
        ],
    )
    if ep.rollout is not None:
        ro = ep.rollout
        console.print(
            f"latest rollout {ro.id}: {ro.strategy.type} {ro.state} (step {ro.step + 1} of "
            f"{len(ro.steps)}) {ro.reason}",
            highlight=False,
        )


@app.command("create")
@handle_errors
def create(
    name: str,
    model: str | None = typer.Option(None, help="The model's name in the registry."),
    version: str | None = typer.Option(None, help="A version number, an alias or 'latest'."),
    variant: str = typer.Option("primary", help="The variant's name."),
    replicas: int = typer.Option(1, help="Model-server processes for the variant."),
    min_replicas: int | None = typer.Option(
        None, help="Autoscaling: fewest replicas (0: scale to zero)."
    ),
    max_replicas: int | None = typer.Option(None, help="Autoscaling: most replicas."),
    target_in_flight: float | None = typer.Option(
        None, help="Autoscaling: requests in flight per replica to aim for."
    ),
    idle_seconds: float | None = typer.Option(
        None, help="Autoscaling with --min-replicas 0: stop every replica after this idle time."
    ),
    autoscaling: str | None = typer.Option(
        None, help='Autoscaling as JSON: {"min_replicas", "max_replicas", "target_in_flight", ...}'
    ),
    placement: str | None = typer.Option(
        None, help="Where replicas run: local (default), ray or ray://HEAD:PORT (Ray actors)."
    ),
    num_cpus: float | None = typer.Option(None, help="CPUs each replica reserves on Ray."),
    variants: str | None = typer.Option(
        None, help='JSON or @file: [{"name", "model", "version", "weight", "replicas", "shadow"}]'
    ),
    capture_percent: float | None = typer.Option(
        None, help="Capture this share (0-100) of requests and answers."
    ),
    wait: bool = typer.Option(True, help="Wait until it is InService."),
    timeout: float = typer.Option(300.0, help="Seconds to wait."),
) -> None:
    """Create an endpoint from approved model versions."""
    capture = {"percent": capture_percent} if capture_percent is not None else None
    scaling = _autoscaling(min_replicas, max_replicas, target_in_flight, idle_seconds, autoscaling)
    with client() as c:
        ep = c.endpoints.create(
            name,
            _variants(
                model,
                version,
                variant,
                replicas,
                variants,
                scaling,
                _placement(placement, num_cpus),
            ),
            capture=capture,
        )
        if wait:
            ep = c.endpoints.wait(name, timeout=timeout)
    emit(ep, lambda: _show(ep))


@app.command("update")
@handle_errors
def update(
    name: str,
    model: str | None = typer.Option(None, help="The model's name in the registry."),
    version: str | None = typer.Option(None, help="A version number, an alias or 'latest'."),
    variant: str = typer.Option("primary", help="The variant's name."),
    replicas: int = typer.Option(1, help="Model-server processes for the variant."),
    min_replicas: int | None = typer.Option(
        None, help="Autoscaling: fewest replicas (0: scale to zero)."
    ),
    max_replicas: int | None = typer.Option(None, help="Autoscaling: most replicas."),
    target_in_flight: float | None = typer.Option(
        None, help="Autoscaling: requests in flight per replica to aim for."
    ),
    idle_seconds: float | None = typer.Option(
        None, help="Autoscaling with --min-replicas 0: stop every replica after this idle time."
    ),
    autoscaling: str | None = typer.Option(
        None, help='Autoscaling as JSON: {"min_replicas", "max_replicas", "target_in_flight", ...}'
    ),
    placement: str | None = typer.Option(
        None, help="Where replicas run: local (default), ray or ray://HEAD:PORT (Ray actors)."
    ),
    num_cpus: float | None = typer.Option(None, help="CPUs each replica reserves on Ray."),
    variants: str | None = typer.Option(None, help="JSON or @file: the complete variant list."),
    strategy: str = typer.Option("blue_green", help="all_at_once, blue_green, canary, linear."),
    canary_percent: float = typer.Option(10.0, help="canary: traffic share of the first step."),
    linear_steps: int = typer.Option(4, help="linear: number of equal steps."),
    bake_seconds: float = typer.Option(30.0, help="Seconds to watch the alarms after each step."),
    alarm: list[str] = typer.Option(
        [], "--alarm", help="METRIC=THRESHOLD: error_rate=0.01, p99_latency_ms=250, custom:NAME=X"
    ),
    capture_percent: float | None = typer.Option(None, help="New capture share (0-100)."),
    wait: bool = typer.Option(True, help="Wait until the rollout ends."),
    timeout: float = typer.Option(1800.0, help="Seconds to wait."),
) -> None:
    """Update an endpoint; a new model version is rolled out with the strategy."""
    plan = {
        "type": strategy,
        "canary_percent": canary_percent,
        "linear_steps": linear_steps,
        "bake_seconds": bake_seconds,
        "alarms": _alarms(alarm),
    }
    capture = {"percent": capture_percent} if capture_percent is not None else None
    scaling = _autoscaling(min_replicas, max_replicas, target_in_flight, idle_seconds, autoscaling)
    with client() as c:
        ep = c.endpoints.update(
            name,
            _variants(
                model,
                version,
                variant,
                replicas,
                variants,
                scaling,
                _placement(placement, num_cpus),
            ),
            strategy=plan,
            capture=capture,
        )
        if wait:
            c.endpoints.wait_rollout(name, timeout=timeout)
            ep = c.endpoints.describe(name)
    emit(ep, lambda: _show(ep))
    if ep.rollout is not None and ep.rollout.state in ("RolledBack", "Failed"):
        raise typer.Exit(1)


@app.command("describe")
@handle_errors
def describe(name: str) -> None:
    """An endpoint: status, variants and traffic, replicas, the latest rollout."""
    with client() as c:
        ep = c.endpoints.describe(name)
    emit(ep, lambda: _show(ep))


@app.command("list")
@handle_errors
def list_endpoints(limit: int = 100, offset: int = 0) -> None:
    """List endpoints."""
    with client() as c:
        result = c.endpoints.list(limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"endpoints ({result.total})",
            ["name", "status", "variants", "updated"],
            [
                (
                    e.name,
                    e.status,
                    ", ".join(f"{v.name}={v.model}:{v.version}" for v in e.variants),
                    f"{e.updated_at:%Y-%m-%d %H:%M:%S}",
                )
                for e in result.endpoints
            ],
        ),
    )


def _as_instances(body: bytes) -> bytes:
    """A JSON list as ``{"instances": list}``; anything else (an object, not JSON) as is."""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    return json.dumps({"instances": value}).encode() if isinstance(value, list) else body


@app.command("invoke")
@handle_errors
def invoke(
    name: str,
    data: str | None = typer.Option(None, help="The request body ('-' reads stdin)."),
    file: Path | None = typer.Option(None, help="Read the request body from this file."),
    content_type: str = typer.Option("application/json", help="The body's content type."),
    accept: str | None = typer.Option(None, help="The answer's wanted content type."),
    body_format: str = typer.Option(
        "instances",
        help='instances: a JSON list body is sent as {"instances": [...]} (what SageMaker '
        "handlers read); raw: the body exactly as given.",
    ),
) -> None:
    """Send one request through the router; print the answer (stdout) and the status, the
    variant and the model version that gave it (stderr, a line of its own)."""
    if body_format not in ("instances", "raw"):
        raise InvalidInput(f"--body-format {body_format!r} is not one of instances, raw")
    if file is not None:
        body = file.read_bytes()
    elif data == "-" or data is None:
        body = sys.stdin.buffer.read()
    else:
        body = data.encode("utf-8")
    if body_format == "instances" and content_type.split(";")[0].strip() == "application/json":
        body = _as_instances(body)
    with client() as c:
        answer = c.endpoints.invoke(name, body, content_type=content_type, accept=accept)
    text = answer.body.decode("utf-8", "replace")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    typer.echo(
        f"# {answer.status} variant={answer.variant} model_version={answer.model_version}",
        err=True,
    )
    if answer.status >= 400:
        raise typer.Exit(1)


@app.command("delete")
@handle_errors
def delete(
    name: str, wait: bool = typer.Option(True, help="Wait until its replicas have stopped.")
) -> None:
    """Stop an endpoint's replicas and remove it (its history and capture files stay)."""
    with client() as c:
        ep = c.endpoints.delete(name, wait=wait)
    emit(ep, lambda: console.print(f"deleted {ep.name}"))


@app.command("capture")
@handle_errors
def capture(name: str, limit: int = 100, offset: int = 0) -> None:
    """List an endpoint's data-capture files (JSON lines in the artifact store)."""
    with client() as c:
        result = c.endpoints.capture_files(name, limit=limit, offset=offset)
    emit(
        result,
        lambda: table(
            f"capture files ({result.total}; {result.dropped} events dropped)",
            ["first", "last", "events", "bytes", "digest"],
            [
                (
                    f"{f.first_time:%Y-%m-%d %H:%M:%S}",
                    f"{f.last_time:%Y-%m-%d %H:%M:%S}",
                    f.count,
                    f.size,
                    f.digest,
                )
                for f in result.files
            ],
        ),
    )


@app.command("rollouts")
@handle_errors
def rollouts(name: str, limit: int = 20) -> None:
    """An endpoint's rollouts, newest first, with the reason of a rollback."""
    with client() as c:
        result = c.endpoints.rollouts(name, limit=limit)
    emit(
        result,
        lambda: table(
            f"rollouts of {name}",
            ["id", "strategy", "state", "step", "reason"],
            [
                (r.id, r.strategy.type, r.state, f"{r.step + 1}/{len(r.steps)}", r.reason)
                for r in result.rollouts
            ],
        ),
    )
