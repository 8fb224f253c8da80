"""``modelyard artifacts``: upload, download, list and verify content-addressed objects."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from modelyard.cli.common import client, console, emit, handle_errors, table
from modelyard.errors import InvalidInput

app = typer.Typer(
    help="Content-addressed artifacts: upload, download, list, verify (scrub).",
    no_args_is_help=True,
)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_RUN_URI = re.compile(r"^runs:/([^/]+)(?:/(.*))?$")
_MODEL_URI = re.compile(r"^models:/([^/]+)/([^/]+)$")
URI_FORMS = "a digest (64 lowercase hex), runs:/<run id>/<path> or models:/<name>/<version|alias>"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


@app.command("upload")
@handle_errors
def upload(
    file: Path = typer.Argument(..., help="The file to store.", exists=True, dir_okay=False),
) -> None:
    """Store a file and print its digest (the original bytes repair a damaged object)."""
    with client() as c:
        ref = c.artifacts.upload(file)
    emit(ref, lambda: typer.echo(f"{ref.digest}  {_size(ref.size)}"))


@app.command("download")
@handle_errors
def download(
    source: str = typer.Argument(..., help=f"What to download: {URI_FORMS}."),
    dest: Path = typer.Argument(
        ..., help="A file path for a digest; a folder for runs:/ and models:/ URIs."
    ),
) -> None:
    """Download verified content: an object, a run's file or folder, or a model version.

    Nothing is written if the content does not match its digest.
    """
    with client() as c:
        if _DIGEST.fullmatch(source):
            ref = c.artifacts.download(source, dest)
            emit(ref, lambda: typer.echo(f"{dest}  {ref.digest}  {_size(ref.size)}"))
            return
        run = _RUN_URI.fullmatch(source)
        if run and run.group(2):
            path = c.tracking.download_artifacts(run.group(1), run.group(2), dest)
        elif (model := _MODEL_URI.fullmatch(source)) is not None:
            version: int | str = int(model.group(2)) if model.group(2).isdigit() else model.group(2)
            path = c.models.download(model.group(1), version, dest)
        else:
            raise InvalidInput(f"cannot download {source!r}: expected {URI_FORMS}")
    emit({"path": str(path)}, lambda: typer.echo(str(path)))


@app.command("ls")
@handle_errors
def ls(
    target: str | None = typer.Argument(
        None,
        help="runs:/<run id> or runs:/<run id>/<folder>: a run's files (else the objects).",
    ),
    after: str = typer.Option("", help="Objects: list digests after this one (paging)."),
    limit: int = typer.Option(100, min=1, max=1000, help="Objects: at most this many."),
) -> None:
    """List the stored objects (digest order, paged), or a run's artifact folder."""
    with client() as c:
        if target is None:
            page = c.artifacts.list(after=after, limit=limit)
            more = f"; next page: --after {page.next_after}" if page.next_after else ""
            emit(
                page,
                lambda: table(
                    f"{len(page.artifacts)} objects{more}",
                    ["digest", "size"],
                    [(a.digest, _size(a.size)) for a in page.artifacts],
                ),
            )
            return
        run = _RUN_URI.fullmatch(target)
        if run is None:
            raise InvalidInput(
                f"cannot list {target!r}: expected runs:/<run id> or runs:/<run id>/<folder>"
            )
        listing = c.tracking.list_artifacts(run.group(1), run.group(2) or None)
    emit(
        listing,
        lambda: table(
            f"run {listing.run_id}: {listing.path or '/'}",
            ["path", "size", "digest"],
            [
                (
                    a.path + ("/" if a.is_dir else ""),
                    "" if a.size is None else _size(a.size),
                    a.digest,
                )
                for a in listing.artifacts
            ],
        ),
    )


@app.command("verify")
@handle_errors
def verify(
    digests: list[str] = typer.Argument(
        None, help="Only these objects (digests); every stored object when omitted."
    ),
) -> None:
    """Read every object and check it against its digest (a scrub; needs the admin role).

    Damaged objects are quarantined on the server and listed; the exit status is 1 when
    any object is damaged or missing, so the command can run from cron.
    """
    with client() as c:
        report = c.artifacts.verify(digests or None)

    def render() -> None:
        console.print(
            f"checked {report.checked} objects ({_size(report.bytes)} intact): "
            f"{len(report.damaged)} damaged, {len(report.missing)} missing",
            highlight=False,
        )
        if report.damaged:
            table(
                "damaged (quarantined; upload the original bytes to repair)",
                ["digest", "problem"],
                [(d.digest, d.problem) for d in report.damaged],
            )
        if report.missing:
            table("missing", ["digest"], [(d,) for d in report.missing])

    emit(report, render)
    if report.damaged or report.missing:
        raise typer.Exit(1)
