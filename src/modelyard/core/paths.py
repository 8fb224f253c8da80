"""Safe handling of user-supplied relative paths (file names inside datasets, models, outputs).

Every path that comes from outside (an upload manifest, a REST body, a folder being
registered) goes through :func:`safe_relpath` before it touches a file system or an object
key, so a name can never climb out of the folder it is meant to live in — not with ``..``,
not with an absolute or Windows path, not with an encoded separator that a later layer
might decode, and not through a symlink.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from modelyard.errors import InvalidInput

__all__ = ["collect_files", "safe_component", "safe_join", "safe_relpath"]

# Longest file-name component most file systems accept (bytes, UTF-8); beyond it the
# caller would get an OS error (a 500) instead of a clear 400.
_MAX_COMPONENT_BYTES = 255
_MAX_PATH_CHARS = 4096

# A percent escape that decodes to a separator, a dot, a percent (double encoding) or a
# control character: a later layer (an HTTP router, an S3 gateway, a browser) may decode
# it and turn a harmless-looking name into ``..`` or ``a/../../b``.
_DANGEROUS_ESCAPE = re.compile(r"%(2[eEfF]|5[cC]|25|[01][0-9a-fA-F]|7[fF])")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _show(value: object) -> str:
    """``repr`` of an offending value, cut short so a huge input cannot flood a log."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F


def safe_relpath(name: str) -> str:
    """Return ``name`` as a normalised POSIX relative path, or raise :class:`InvalidInput`.

    Accepted: ``/``-separated components of printable characters. ``.`` components and
    repeated or trailing slashes are dropped (``a/./b//`` -> ``a/b``).

    Refused, with the offending value in the message:

    - anything that is not a non-empty ``str``, or is longer than 4096 characters;
    - absolute paths: ``/x``, ``C:\\x``, ``C:x``, ``\\\\server\\share``;
    - any backslash (a separator on Windows, so ``a\\..\\b`` would be a traversal there);
    - any ``..`` component, and any component made only of dots and spaces (Windows
      strips trailing dots and spaces, turning ``.. `` into ``..``);
    - NUL and other control characters (C0, DEL, C1);
    - percent escapes of separators, dots, percent signs or control characters
      (``%2f``, ``%5C``, ``%2e``, ``%25``, ``%00``...);
    - text that cannot be encoded as UTF-8 (lone surrogates) and components longer than
      255 UTF-8 bytes;
    - a path that normalises to nothing (``.``, ``./``).
    """
    if not isinstance(name, str):
        raise InvalidInput(f"path {_show(name)} must be a string")
    if not name:
        raise InvalidInput("path must not be empty")
    if len(name) > _MAX_PATH_CHARS:
        raise InvalidInput(f"path {_show(name)} is longer than {_MAX_PATH_CHARS} characters")
    if any(_is_control(ch) for ch in name):
        raise InvalidInput(f"path {_show(name)} contains a NUL or control character")
    if "\\" in name:
        raise InvalidInput(f"path {_show(name)} contains a backslash; use '/' as separator")
    if name.startswith("/") or _DRIVE.match(name):
        raise InvalidInput(f"path {_show(name)} is absolute; a relative path is required")
    if _DANGEROUS_ESCAPE.search(name):
        raise InvalidInput(
            f"path {_show(name)} contains a percent-encoded separator, dot, percent sign or "
            "control character"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"path {_show(name)} is not valid UTF-8 text") from None
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part.rstrip(". ") == "":
            raise InvalidInput(
                f"path {_show(name)} has the component {part!r}; '..' and names made only "
                "of dots and spaces are not allowed"
            )
        if len(part.encode("utf-8")) > _MAX_COMPONENT_BYTES:
            raise InvalidInput(
                f"path {_show(name)} has a component longer than {_MAX_COMPONENT_BYTES} bytes"
            )
        parts.append(part)
    if not parts:
        raise InvalidInput(f"path {_show(name)} does not name anything below the root")
    return "/".join(parts)


def safe_component(name: str) -> str:
    """Return ``name`` when it is one safe file-name component, or raise :class:`InvalidInput`.

    For names that must not contain a folder (a model's single-file artifact name, a
    download's file name): everything :func:`safe_relpath` refuses, plus any ``/`` and
    any ``.`` component, so ``dest / safe_component(name)`` is always directly in ``dest``.
    """
    clean = safe_relpath(name)
    if clean != name or "/" in clean:
        raise InvalidInput(f"file name {_show(name)} must be a single name without '/' or '.'")
    return clean


def safe_join(root: str | os.PathLike[str], rel: str) -> Path:
    """Join ``rel`` (checked with :func:`safe_relpath`) below ``root`` and resolve symlinks.

    Returns the fully resolved path. Raises :class:`InvalidInput` when ``rel`` is unsafe
    or when the resolved result is not strictly inside the resolved ``root`` (a symlink
    inside the tree pointing elsewhere, or at the root itself). The target need not
    exist. The check is made at call time: a tree that untrusted code can modify
    concurrently needs its own locking.
    """
    clean = safe_relpath(rel)
    base = Path(root).resolve()
    target = (base / clean).resolve()
    if target == base or not target.is_relative_to(base):
        raise InvalidInput(
            f"path {_show(rel)} resolves to {str(target)!r}, outside the folder {str(base)!r}"
        )
    return target


def collect_files(folder: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """List every regular file below ``folder`` as ``(relpath, path)``, sorted by relpath.

    ``relpath`` is a POSIX relative path that has passed :func:`safe_relpath`; ``path`` is
    ``folder`` joined with it. Empty directories are not listed. Raises
    :class:`InvalidInput` naming the entry when the tree holds a symlink (to a file or a
    directory: following it could read or upload data from outside the folder), anything
    that is not a regular file or directory (FIFO, socket, device: reading one can hang or
    never end), or a name that :func:`safe_relpath` refuses. ``folder`` itself must be a
    directory (a symlink to one is accepted: the caller named it explicitly). Unreadable
    directories raise the underlying :class:`OSError` instead of being skipped silently.
    """
    top = Path(folder)
    if not top.is_dir():
        raise InvalidInput(f"{str(top)!r} is not a directory")
    found: list[tuple[str, Path]] = []
    pending: list[tuple[str, Path]] = [("", top)]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                path = Path(entry.path)
                if entry.is_symlink():
                    raise InvalidInput(
                        f"{str(path)!r} is a symbolic link; links are not followed, copy the "
                        "target into the folder instead"
                    )
                # Validate every name, directories included, before descending.
                safe_relpath(rel)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    pending.append((f"{rel}/", path))
                elif stat.S_ISREG(mode):
                    found.append((rel, path))
                else:
                    raise InvalidInput(
                        f"{str(path)!r} is not a regular file or directory (FIFO, socket or device)"
                    )
    found.sort(key=lambda item: item[0])
    return found
