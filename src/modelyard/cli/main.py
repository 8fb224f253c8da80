"""``modelyard``: the control plane (``up``), the database, and every domain's commands."""

from __future__ import annotations

import ipaddress

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

app = typer.Typer(
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
