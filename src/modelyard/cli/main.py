"""``modelyard``: the control plane (``up``), the database, and every domain's commands."""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Collection, Sequence
from typing import Any

import typer

from modelyard.cli import (
    artifacts,
    datasets,
    endpoints,
    jobs,
    lineage,
    models,
    security,
    tracking,
    transform,
)
from modelyard.cli.common import configure, err_console, handle_errors

# main()'s options, which may come before the group's name: those that take a value.
_GLOBAL_VALUE_OPTIONS = ("--url", "--token", "--home")
_GLOBAL_FLAGS = ("--json", "--wide")


def group_named(argv: Sequence[str], groups: Collection[str]) -> str | None:
    """The command group a command line runs (``runs`` in ``--json runs list``), or None
    when it may need the others: no group named, an unknown name, the top level's help or
    any option of the top level's but main()'s."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_VALUE_OPTIONS:
            i += 2
        elif arg in _GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in _GLOBAL_VALUE_OPTIONS)):
            i += 1
        else:
            return arg if arg in groups else None
    return None


class _Modelyard(typer.Typer):
    """The ``modelyard`` command: builds only the group a command line runs.

    typer turns every group's every command into a click command (reading each function's
    signature and type hints) before it parses anything: ~15 ms of each command's start
    for the ~60 commands it does not run. When the command line names its group (``runs
    list``, ``--json jobs describe ID``), the other groups are left out of that build; so
    is nothing else (the group's own help and errors, main()'s options, the top-level
    commands). Anything else (``--help``, an unknown name, shell completion) builds all.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = kwargs.get("args", args[0] if args else None)
        completing = any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ)
        name = None
        if not completing:
            names = {g.name for g in self.registered_groups if g.name}
            name = group_named(list(sys.argv[1:] if argv is None else argv), names)
        if name is None:
            return super().__call__(*args, **kwargs)
        every_group = self.registered_groups
        self.registered_groups = [g for g in every_group if g.name == name]
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.registered_groups = every_group


app = _Modelyard(
    help="modelyard: a self-hosted machine-learning platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's help layout (inherited by every group): typer's rich layout prints a type
    # column that shows every flag as `--json <bool>`, as if it took a value.
    rich_markup_mode=None,
)
db_app = typer.Typer(help="The metadata store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(security.users_app, name="users")
app.add_typer(security.tokens_app, name="tokens")
app.add_typer(security.audit_app, name="audit")
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(tracking.experiments_app, name="experiments")
app.add_typer(tracking.runs_app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(transform.app, name="transform")
app.add_typer(artifacts.app, name="artifacts")
app.command("lineage")(lineage.lineage)


@app.callback()
def main(
    url: str | None = typer.Option(
        None, envvar="MODELYARD_URL", help="Server URL (else embedded)."
    ),
    token: str | None = typer.Option(None, envvar="MODELYARD_TOKEN", help="API token."),
    home: str | None = typer.Option(None, envvar="MODELYARD_HOME", help="Embedded state folder."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = typer.Option(
        False, "--wide", help="Tables at full width in a terminal too (always when piped)."
    ),
) -> None:
    configure(url, token, home, json_out, wide)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@handle_errors
def up(
    host: str = typer.Option("127.0.0.1", envvar="MODELYARD_HOST", help="Bind address."),
    port: int = typer.Option(8765, envvar="MODELYARD_PORT"),
    db: str | None = typer.Option(
        None, envvar="MODELYARD_DB", help="sqlite:///… or postgresql://…"
    ),
    artifacts: str | None = typer.Option(
        None, envvar="MODELYARD_ARTIFACTS", help="Folder or s3://…"
    ),
    home: str | None = typer.Option(None, envvar="MODELYARD_HOME"),
    auth: bool = typer.Option(False, "--auth", envvar="MODELYARD_AUTH", help="Require API tokens."),
    allowed_host: list[str] = typer.Option([], help="Extra accepted Host header values."),
    log_level: str = typer.Option("info"),
) -> None:
    """Start the control plane (API, docs at /docs)."""
    import uvicorn

    from modelyard.config import Settings
    from modelyard.runtime import Runtime
    from modelyard.security.service import has_users
    from modelyard.server.app import create_app

    settings = Settings.from_env(
        home=home, db_url=db, artifacts_url=artifacts, host=host, port=port, auth=auth or None
    )
    if allowed_host:
        settings.allowed_hosts = allowed_host
    runtime = Runtime(settings)
    if not is_loopback(host):
        with runtime.db.transaction(write=False) as session:
            users = has_users(session)
        if not settings.auth or not users:
            runtime.close()
            err_console.print(
                f"[red]refusing to listen on {host}[/red]: without auth anyone who can reach "
                "this address could use the platform. Create an admin and a token "
                "(`modelyard users create admin --role admin`, `modelyard tokens create "
                "--user admin`), then start with `--auth`, or bind to 127.0.0.1."
            )
            raise typer.Exit(2)
    err_console.print(
        f"modelyard on http://{host}:{port}  (metadata: {settings.db_url.split('@')[-1]}, "
        f"artifacts: {settings.artifacts_url}, auth: {'on' if settings.auth else 'off'})"
    )
    uvicorn.run(
        create_app(runtime),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


@db_app.command("upgrade")
@handle_errors
def db_upgrade(db: str | None = typer.Option(None, envvar="MODELYARD_DB")) -> None:
    """Apply migrations up to the newest schema (also done at every start)."""
    from modelyard.config import Settings
    from modelyard.core.db import Database
    from modelyard.migrations import current_revision, head_revision, upgrade

    settings = Settings.from_env(db_url=db)
    database = Database(settings.db_url)
    before = current_revision(database.engine)
    upgrade(database.engine)
    typer.echo(f"schema {before or 'empty'} -> {head_revision()}")
    database.dispose()


@db_app.command("current")
@handle_errors
def db_current(db: str | None = typer.Option(None, envvar="MODELYARD_DB")) -> None:
    """Print the schema revision of the metadata store."""
    from modelyard.config import Settings
    from modelyard.core.db import Database
    from modelyard.migrations import current_revision, head_revision

    database = Database(Settings.from_env(db_url=db).db_url)
    typer.echo(f"current: {current_revision(database.engine)}  head: {head_revision()}")
    database.dispose()
