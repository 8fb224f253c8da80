"""Which flavor a model's content *is*, read from the content, not from a label.

The model server decides how to load a folder from what is in it (``serving/loading.py``):
a :data:`MODEL_FILE` descriptor names its flavor; without one, a SageMaker-style
``code/inference.py`` is imported and run; without either, a built-in algorithm's
``metadata.json`` names the algorithm. :func:`content_flavor` applies the same order to
a ``.tar.gz`` of the folder, reading only the names and those small files, so the
registry can refuse a label that disagrees with what a replica would do.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from modelyard.algorithms import ALGORITHMS
from modelyard.core.paths import safe_relpath
from modelyard.errors import InvalidInput
from modelyard.flavors._builtin import METADATA_FILE, PREFIX
from modelyard.flavors._descriptor import MODEL_FILE, parse_descriptor

__all__ = ["HANDLER_SCRIPT", "RUNS_USER_CODE", "Content", "content_flavor", "runs_user_code"]

# A SageMaker inference handler: the model server imports and runs it (no descriptor).
HANDLER_SCRIPT = "code/inference.py"
# Flavors whose loading executes code that came with the model: a handler module, or
# unpickling (which can call anything).
RUNS_USER_CODE = frozenset({"python", "pickle"})
# The descriptor and metadata.json are small; a larger member is not one of ours.
_MAX_SMALL_FILE = 4 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def runs_user_code(flavor: str) -> bool:
    """Whether loading a model of ``flavor`` executes code that came with the model."""
    return flavor in RUNS_USER_CODE


@dataclass(frozen=True)
class Content:
    """What the content says: ``flavor`` (None when nothing in it names one, so nothing
    would load or run it) and ``evidence``, the file that says so, for error messages."""

    flavor: str | None
    evidence: str

    @property
    def runs_user_code(self) -> bool:
        return self.flavor is not None and runs_user_code(self.flavor)


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > _MAX_SMALL_FILE:
        raise InvalidInput(f"{member.name} in the model archive is larger than {_MAX_SMALL_FILE}")
    handle = tar.extractfile(member)
    if handle is None:
        raise InvalidInput(f"{member.name} in the model archive is not a regular file")
    with handle:
        return handle.read()


def _parents(name: str) -> list[str]:
    """``"a/b/c"`` -> ``["a", "a/b"]``."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def content_flavor(path: Path) -> Content:
    """The flavor of the model artifact at ``path`` as the model server would load it.

    A file that is not a gzip archive, or an archive of a folder that holds none of
    :data:`MODEL_FILE`, :data:`HANDLER_SCRIPT` or a built-in algorithm's
    ``metadata.json``, gives ``Content(None, ...)``. Raises :class:`InvalidInput` for an
    archive that cannot be read or holds an unsafe name, a link (symbolic or hard) at
    one of those names or a folder above them, or a malformed descriptor.
    """
    with open(path, "rb") as fh:
        if fh.read(2) != _GZIP_MAGIC:
            return Content(None, "a single file")
    wanted = {MODEL_FILE, HANDLER_SCRIPT, METADATA_FILE}
    # The names that decide the flavor and every folder above them.
    decisive = wanted | {parent for name in wanted for parent in _parents(name)}
    found: dict[str, bytes | None] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if member.isdir() and member.name.strip("./") == "":
                    continue  # the archive's root folder ("./" from ``tar -C dir .``)
                name = safe_relpath(member.name)
                if name in decisive and (member.issym() or member.islnk()):
                    # The model server follows links (``is_file()``), this check would
                    # not: refuse rather than decide the flavor differently from it.
                    raise InvalidInput(
                        f"{member.name!r} in the model archive is a link; "
                        f"{', '.join(sorted(decisive))} must be regular files or folders"
                    )
                if name in wanted and member.isreg():
                    # Only the descriptor and metadata.json are read; the handler's
                    # presence is what counts.
                    found[name] = None if name == HANDLER_SCRIPT else _read_small(tar, member)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"the model archive is not a readable .tar.gz: {exc}") from exc
    descriptor = found.get(MODEL_FILE)
    if descriptor is not None:
        flavor = parse_descriptor(descriptor, f"{MODEL_FILE} in the model archive").flavor
        return Content(flavor, f"its {MODEL_FILE} names flavor {flavor!r}")
    if HANDLER_SCRIPT in found:
        return Content(
            "python",
            f"it holds {HANDLER_SCRIPT} and no {MODEL_FILE}: the model server imports and "
            "runs that handler (flavor 'python')",
        )
    metadata = found.get(METADATA_FILE)
    if metadata is not None:
        try:
            document = json.loads(metadata)
        except (ValueError, UnicodeDecodeError):
            document = None
        algorithm = document.get("algorithm") if isinstance(document, dict) else None
        if isinstance(algorithm, str) and algorithm in ALGORITHMS:
            flavor = PREFIX + algorithm
            return Content(flavor, f"its {METADATA_FILE} names the built-in {algorithm!r}")
    return Content(None, f"a folder with no {MODEL_FILE}, {HANDLER_SCRIPT} or {METADATA_FILE}")
