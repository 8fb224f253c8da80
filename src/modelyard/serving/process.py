"""The replica process: ``python -m modelyard.serving --model-dir DIR --name NAME --port P``.

The flags become a :class:`ServerSettings`, passed to every uvicorn worker process in
the ``MODELYARD_SERVING_SETTINGS`` environment variable; each worker builds its app with
:func:`app_factory` and loads the model before it accepts connections, so every worker
that answers has its model (``/ping`` 200); if loading fails the worker still starts and
answers ``/ping`` with 503 and the reason. SIGTERM or SIGINT stops the server gracefully
(in-flight requests finish) with exit status 0.

Bound to a loopback address (or given ``--allowed-host``), the server answers only
``Host`` headers naming loopback or its bind address (421 otherwise). With a secret in
``MODELYARD_REPLICA_SECRET`` (an endpoint replica) every request must carry it in
``X-Modelyard-Replica-Secret`` (403 otherwise). ``--owner-file`` names a JSON file
``{"pid", "started"}`` of the process that owns this server (the endpoints controller):
once that process has been gone for ``--orphan-grace-s`` seconds, the server stops itself
as on SIGTERM; a new owner that rewrites the file in time keeps it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psutil
import uvicorn

from modelyard.core.procs import start_ticks
from modelyard.serving.app import ModelServer
from modelyard.serving.loading import handler_path, load_servable
from modelyard.serving.prepare import needs_preparing, prepare
from modelyard.serving.settings import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    ENV_VAR,
    SECRET_ENV,
    ServerSettings,
)

log = logging.getLogger("modelyard.serving")


def app_factory() -> ModelServer:
    """uvicorn's factory (``modelyard.serving.process:app_factory``), once per worker."""
    _setup_logging()
    settings = ServerSettings.from_env()
    return ModelServer(settings, loader=lambda: load_servable(settings))


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _stopped(signum: int, frame: object) -> None:
    log.info("stopped by signal %d", signum)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modelyard.serving",
        description="Serve one model version (SageMaker /invocations and KServe v2 routes).",
    )
    p.add_argument("--model-dir", type=Path, help="a saved model folder")
    p.add_argument("--name", required=True, help="the model's name (v2 routes, headers)")
    p.add_argument("--version", default="1", help="the model version (default 1)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="worker processes (each loads the model)")
    p.add_argument("--max-batch-size", type=int, default=32, help="rows per predict call")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait to fill a batch")
    p.add_argument(
        "--max-payload-bytes",
        type=int,
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        help="larger request bodies get 413 (default 6 MiB, as SageMaker)",
    )
    p.add_argument("--handler", type=Path, help="a SageMaker inference script (model_fn, ...)")
    p.add_argument("--no-onnx", action="store_true", help="never use the ONNX Runtime fast path")
    p.add_argument("--onnx-sample", type=Path, help=".npy or .csv rows to verify ONNX against")
    p.add_argument("--onnx-rtol", type=float, default=1e-4)
    p.add_argument("--onnx-atol", type=float, default=1e-5)
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="also answer this Host name (default: loopback and the bind address only, "
        "when bound to loopback)",
    )
    p.add_argument(
        "--owner-file",
        type=Path,
        help='JSON {"pid", "started"} of the owning process; stop once it is gone',
    )
    p.add_argument(
        "--orphan-grace-s",
        type=float,
        default=30.0,
        help="with --owner-file: how long the owner may be gone before this server stops",
    )
    p.add_argument("--log-level", default="info")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.model_dir is None and args.handler is None:
        print("error: give --model-dir (a saved model folder) or --handler", file=sys.stderr)
        return 2
    if args.model_dir is not None and not args.model_dir.is_dir():
        print(f"error: --model-dir {str(args.model_dir)!r} is not a folder", file=sys.stderr)
        return 2
    if args.handler is not None and not args.handler.is_file():
        print(f"error: --handler {str(args.handler)!r} is not a file", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    # from the environment, and out of it before any model code runs
    secret = os.environ.pop(SECRET_ENV, None) or None
    try:
        settings = ServerSettings(
            name=args.name,
            version=args.version,
            model_dir=args.model_dir.resolve() if args.model_dir else None,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            max_payload_bytes=args.max_payload_bytes,
            use_onnx=not args.no_onnx,
            onnx_rtol=args.onnx_rtol,
            onnx_atol=args.onnx_atol,
            onnx_sample=args.onnx_sample.resolve() if args.onnx_sample else None,
            handler=args.handler.resolve() if args.handler else None,
            secret=secret,
            allowed_hosts=allowed_hosts(args.host, args.allowed_host, always=secret is not None),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    onnx_dir: Path | None = None
    if handler_path(settings) is None and needs_preparing(settings):
        onnx_dir = Path(tempfile.mkdtemp(prefix="modelyard-onnx-"))
        prepare(settings, onnx_dir)
        settings = replace(settings, onnx_dir=onnx_dir)
    try:
        _serve(settings, args)
    finally:
        if onnx_dir is not None:
            shutil.rmtree(onnx_dir, ignore_errors=True)
    return 0


def allowed_hosts(host: str, extra: Sequence[str], *, always: bool = False) -> tuple[str, ...]:
    """The Host names a server bound to ``host`` answers: loopback, the bind address and
    ``extra``; every name (none checked) when it is bound to a non-loopback address with
    no ``extra`` and not ``always`` (a replica always checks)."""
    names = {h.strip("[]").lower() for h in extra}
    if not names and not always and not _loopback(host):
        return ()
    return tuple(sorted(names | {"127.0.0.1", "localhost", "::1", host.strip("[]").lower()}))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _owner_alive(owner_file: Path) -> bool:
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        proc = psutil.Process(int(owner["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        ticks = owner.get("start_ticks")
        if isinstance(ticks, int):  # exact, whatever the wall clock did since
            return start_ticks(proc.pid) == ticks
        return abs(float(proc.create_time()) - float(owner["started"])) < 1.0
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def _watch_owner(owner_file: Path, grace_s: float, poll_s: float = 1.0) -> None:
    """Stop this server (SIGTERM to itself: a graceful stop) once the owner named in
    ``owner_file`` has been gone for ``grace_s`` seconds."""
    gone_since: float | None = None
    while True:
        time.sleep(poll_s)
        if _owner_alive(owner_file):
            gone_since = None
            continue
        now = time.monotonic()
        gone_since = now if gone_since is None else gone_since
        if now - gone_since >= grace_s:
            log.warning("the owner in %s is gone for %g s: stopping", owner_file, grace_s)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _serve(settings: ServerSettings, args: argparse.Namespace) -> None:
    if args.owner_file is not None:
        threading.Thread(
            target=_watch_owner,
            args=(args.owner_file, args.orphan_grace_s),
            name="modelyard-owner-watch",
            daemon=True,
        ).start()
    os.environ[ENV_VAR] = settings.to_env()
    if settings.secret is not None:
        # For app_factory (here, or in each worker process), which takes it out again
        # before the model is loaded.
        os.environ[SECRET_ENV] = settings.secret
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal against the
    # handlers it found at start; these make that re-raise a no-op, so the exit status is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    uvicorn.run(
        "modelyard.serving.process:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
