"""Deterministic .tar.gz archives (source snapshots, model artifacts) and safe extraction.

The same folder always gives the same bytes, hence the same digest: entries are sorted,
and owners, times and permission bits other than "executable" are normalised, as is the
gzip header. So a model or a source snapshot that did not change is stored once, and a
recorded digest names exactly one tree of files.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path

from modelyard.core.paths import safe_relpath
from modelyard.errors import InvalidInput

# Never part of a source snapshot: caches and environments that change on every run.
SOURCE_EXCLUDES = frozenset(
    {
        ".git",
        "__pycache__",
        ".venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        ".DS_Store",
    }
)


def walk(root: Path, *, excludes: Iterable[str] = (), allow_symlinks: bool = False) -> list[str]:
    """Relative POSIX paths of every file, directory and (optionally) symlink, sorted.

    Names in ``excludes`` are skipped at any depth; ``*.pyc`` too when ``excludes`` is
    given. A symlink raises :class:`InvalidInput` unless ``allow_symlinks`` (it is then
    listed, never followed). FIFOs, sockets and devices always raise.
    """
    skip = frozenset(excludes)
    found: list[str] = []
    pending = [("", root)]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name in skip or (skip and entry.name.endswith(".pyc")):
                    continue
                rel = safe_relpath(f"{prefix}{entry.name}")
                if entry.is_symlink():
                    if not allow_symlinks:
                        raise InvalidInput(
                            f"{entry.path!r} is a symbolic link; links are not followed, "
                            "copy the target into the folder instead"
                        )
                    found.append(rel)
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    found.append(rel)
                    pending.append((f"{rel}/", Path(entry.path)))
                elif stat.S_ISREG(mode):
                    found.append(rel)
                else:
                    raise InvalidInput(f"{entry.path!r} is not a regular file or directory")
    return sorted(found)


def write_tar_gz(
    root: Path, dest: Path, *, excludes: Iterable[str] = (), allow_symlinks: bool = False
) -> list[str]:
    """Archive the tree below ``root`` into ``dest`` deterministically; the file paths."""
    files: list[str] = []
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in walk(root, excludes=excludes, allow_symlinks=allow_symlinks):
            path = root / rel
            info = tar.gettarinfo(str(path), arcname=rel)
            executable = info.isdir() or bool(info.mode & stat.S_IXUSR)
            info.mode = 0o755 if executable else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                files.append(rel)
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                if info.issym():
                    files.append(rel)
                tar.addfile(info)
    return files


# The most bytes an archive may unpack to (the sum of its members' sizes): a small
# .tar.gz can otherwise fill the disk of whoever extracts it.
MAX_UNPACKED_BYTES = 8 << 30


def list_tar_gz(
    path: Path, *, limit: int = 100_000, max_total_size: int = MAX_UNPACKED_BYTES
) -> dict[str, bool]:
    """``{name: is_regular_file}`` of an archive; :class:`InvalidInput` if it is unusable.

    Refuses archives with unsafe names (absolute, ``..``), links that point outside the
    archive or at an absolute path, devices or FIFOs, more than ``limit`` members, or
    members whose sizes add up to more than ``max_total_size`` bytes.
    """
    members: dict[str, bool] = {}
    total = 0
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if len(members) >= limit:
                    raise InvalidInput(f"the archive has more than {limit} entries")
                name = safe_relpath(member.name)
                total += max(member.size, 0)
                if total > max_total_size:
                    raise InvalidInput(
                        f"the archive unpacks to at least {total} bytes (by entry "
                        f"{member.name!r}); the limit is {max_total_size} bytes"
                    )
                if member.issym() or member.islnk():
                    target = member.linkname
                    if target.startswith(("/", "\\")):
                        raise InvalidInput(
                            f"archive entry {member.name!r} links to the absolute path "
                            f"{target!r}; links must be relative and stay inside the archive"
                        )
                    base = name.rsplit("/", 1)[0] if "/" in name and member.issym() else ""
                    safe_relpath(f"{base}/{target}" if base else target)
                elif not (member.isreg() or member.isdir()):
                    raise InvalidInput(f"archive entry {member.name!r} is not a file or folder")
                members[name] = member.isreg()
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"the archive is not a readable .tar.gz: {exc}") from exc
    return members


def extract_tar_gz(path: Path, dest: Path) -> None:
    """Extract with the standard library's ``data`` filter (no escapes, no devices)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="r:gz") as tar:
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise InvalidInput(
                f"the archive holds an entry that may not be extracted: {exc}"
            ) from exc
