"""The descriptor of a saved model folder: what it is, its files and their digests.

A saved model is a folder holding the model's files and :data:`MODEL_FILE` at its root.
The descriptor names the flavor (how to load the files), records the SHA-256 of every
other file in the folder (checked on every load) and carries the signature, library
versions, task and classes that the registry and the model server show and use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard.core.paths import safe_relpath
from modelyard.errors import InvalidInput, NotFound

MODEL_FILE = "modelyard-model.json"
DESCRIPTOR_VERSION = 1

Dtype = Literal[
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "string",
    "bytes",
    "datetime",
]
DTYPES: tuple[str, ...] = Dtype.__args__  # type: ignore[attr-defined]
_SHA256_HEX = r"^[0-9a-f]{64}$"


class TensorSpec(BaseModel):
    """One input or output: a column (``name`` set, ``shape`` ``[-1]``) or a tensor.

    ``shape`` lists dimensions with ``-1`` for "any size" (the first one is the batch);
    ``None`` means the shape is not constrained.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=1024)
    dtype: Dtype
    shape: list[int] | None = None

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int] | None) -> list[int] | None:
        if shape is not None and any(d < -1 for d in shape):
            raise ValueError(f"shape {shape} has a dimension below -1 (-1 means any size)")
        return shape


class Signature(BaseModel):
    """What a model reads and returns.

    ``inputs`` with names are columns (a table, a list of records or a dict of lists);
    a single unnamed input is a tensor (an array). ``outputs`` is ``None`` when unknown.
    ``params`` are named inference parameters with their default values.
    """

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec]
    outputs: list[TensorSpec] | None = None
    params: dict[str, Any] | None = None

    @property
    def column_names(self) -> list[str] | None:
        """The input names in order when every input is named, else ``None``."""
        names = [spec.name for spec in self.inputs]
        if names and all(name is not None for name in names):
            return [str(name) for name in names]
        return None


class ModelDescriptor(BaseModel):
    """The content of :data:`MODEL_FILE`.

    ``files`` maps every file of the folder except the descriptor (relative POSIX path)
    to its SHA-256; ``framework`` maps library names to the versions that saved the model;
    ``extra`` holds flavor-specific facts (for example the XGBoost wrapper class).
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = DESCRIPTOR_VERSION
    flavor: str = Field(min_length=1, max_length=200)
    files: dict[str, str] = Field(default_factory=dict)
    signature: Signature | None = None
    framework: dict[str, str] = Field(default_factory=dict)
    task: str | None = None
    classes: list[Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version != DESCRIPTOR_VERSION:
            raise ValueError(
                f"format_version {version} is not {DESCRIPTOR_VERSION}, the only one this "
                "modelyard reads (a newer modelyard wrote it?)"
            )
        return version

    @field_validator("files")
    @classmethod
    def _safe_files(cls, files: dict[str, str]) -> dict[str, str]:
        clean: dict[str, str] = {}
        for rel, digest in files.items():
            try:
                name = safe_relpath(rel)
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
            if name == MODEL_FILE:
                raise ValueError(f"files must not list the descriptor {MODEL_FILE}")
            if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
                raise ValueError(f"digest of {name!r} must be 64 lower-case hex characters")
            clean[name] = digest
        return clean


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def sha256_file(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def parse_descriptor(text: str | bytes, where: str) -> ModelDescriptor:
    """Validate descriptor JSON; :class:`InvalidInput` naming ``where`` and the problem."""
    try:
        return ModelDescriptor.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'descriptor'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise InvalidInput(f"{where} is not a valid model descriptor: {problems}") from None


def write_descriptor(folder: Path, descriptor: ModelDescriptor) -> None:
    """Write :data:`MODEL_FILE` atomically (temp file, fsync, rename)."""
    text = json.dumps(descriptor.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".modelyard-model-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / MODEL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def require_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path when it is an existing folder; :class:`NotFound` otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise NotFound(f"model folder {str(folder)!r} {what}")
    return folder
