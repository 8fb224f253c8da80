"""Per-job Python environments for sources that bring a ``requirements.txt``.

One virtual environment per distinct requirements file (and Python version), cached at
``<home>/envs/<sha256>``: the first job with those requirements builds it, later ones
reuse it. The environment sees the control plane's installed packages (through a
``.pth`` file: ``--system-site-packages`` alone would only show the base interpreter's
when modelyard itself runs in a virtual environment), so pip installs only what is
missing. Builds are serialised per environment with a file lock, and an environment is
used only once its ``.modelyard-ready`` marker exists, so a crash mid-build is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import IO

READY = ".modelyard-ready"


class EnvironmentBuildFailed(Exception):
    """pip or venv failed; the message ends with the tail of their output."""


def environment_key(requirements: bytes) -> str:
    """SHA-256 of the Python version and the requirements file's bytes."""
    h = hashlib.sha256()
    h.update(f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}\0".encode())
    h.update(requirements)
    return h.hexdigest()


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _parent_site_dirs() -> list[str]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += site.getsitepackages()
    seen: list[str] = []
    for d in dirs:
        if d not in seen and Path(d).is_dir():
            seen.append(d)
    return seen


def _run(cmd: list[str], log: IO[bytes], cwd: Path, what: str) -> None:
    log.write(f"[modelyard] {what}: {' '.join(cmd)}\n".encode())
    log.flush()
    result = subprocess.run(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.write(result.stdout)
    log.flush()
    if result.returncode != 0:
        tail = result.stdout.decode("utf-8", errors="replace").strip().splitlines()[-5:]
        raise EnvironmentBuildFailed(
            f"{what} failed with exit code {result.returncode}: " + " | ".join(tail)
        )


def ensure_environment(requirements_file: Path, envs_root: Path, log: IO[bytes]) -> Path:
    """The Python interpreter of the cached environment for ``requirements_file``.

    Builds it if needed, writing the build's output to ``log``. Relative paths in the
    requirements resolve against the file's folder (pip runs there). Raises
    :class:`EnvironmentBuildFailed`.
    """
    key = environment_key(requirements_file.read_bytes())
    env_dir = envs_root / key
    python = _python(env_dir)
    if (env_dir / READY).exists():
        return python
    envs_root.mkdir(parents=True, exist_ok=True)
    with open(envs_root / f"{key}.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (env_dir / READY).exists():
            return python
        if env_dir.exists():
            shutil.rmtree(env_dir)
        cwd = requirements_file.parent
        _run(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env_dir)],
            log,
            cwd,
            "creating the job environment",
        )
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(purelib, "modelyard-parent.pth").write_text(
            "".join(f"{d}\n" for d in _parent_site_dirs()), encoding="utf-8"
        )
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
                str(requirements_file),
            ],
            log,
            cwd,
            "installing requirements.txt",
        )
        (env_dir / READY).touch()
    return python
