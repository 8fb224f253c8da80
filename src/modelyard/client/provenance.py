"""What a run records about where it came from: code, git commit, environment.

Captured on the caller's machine (the server cannot see it): the versions of the
distributions whose modules the process has imported (so a run names the numpy and
scikit-learn it really used, not everything installed), the Python version and
platform; the git commit of the repository holding the code, when there is one; and a
deterministic ``.tar.gz`` of the code (one script or a folder), whose digest names
exactly that code.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

from modelyard.compute.archive import SOURCE_EXCLUDES, write_tar_gz


@cache
def _module_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def environment() -> dict[str, str]:
    """``python``, ``platform`` and ``<distribution>: <version>`` for imported modules."""
    found = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    owners = _module_distributions()
    for module in {name.partition(".")[0] for name in list(sys.modules)}:
        for dist in owners.get(module, ()):
            if dist in found:
                continue
            try:
                found[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return dict(sorted(found.items()))


def main_script() -> Path | None:
    """The script the interpreter is running, if it is a file (not a REPL or ``-c``)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    candidate = Path(path)
    return candidate if candidate.is_file() else None


def git_commit(where: Path) -> str | None:
    """HEAD of the git repository containing ``where``; None outside one or without git."""
    folder = where if where.is_dir() else where.parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    if result.returncode != 0 or not commit:
        return None
    return commit.lower()


def snapshot(code: Path, dest_dir: Path) -> Path:
    """A deterministic ``code.tar.gz`` of one file or a folder (caches and .git left out)."""
    archive = dest_dir / "code.tar.gz"
    if code.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / code.name
            staged.write_bytes(code.read_bytes())
            write_tar_gz(Path(tmp), archive)
    else:
        write_tar_gz(code, archive, excludes=SOURCE_EXCLUDES)
    return archive
