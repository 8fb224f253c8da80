"""``save_model``, ``load_model``, ``read_descriptor`` and the registry of flavors."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelyard.algorithms import ALGORITHMS
from modelyard.core.paths import collect_files, safe_join
from modelyard.errors import (
    ArtifactCorrupted,
    Conflict,
    InvalidInput,
    ModelyardError,
    NotFound,
    UntrustedModel,
)
from modelyard.flavors._base import Flavor, LoadedModel, LoadOptions, SaveOptions
from modelyard.flavors._builtin import PREFIX, BuiltinFlavor, algorithm_of, describe
from modelyard.flavors._descriptor import (
    MODEL_FILE,
    ModelDescriptor,
    parse_descriptor,
    require_folder,
    sha256_file,
    write_descriptor,
)
from modelyard.flavors._lightgbm import LightGBMFlavor
from modelyard.flavors._onnx import OnnxFlavor
from modelyard.flavors._pickle import PickleFlavor
from modelyard.flavors._python import PythonFlavor
from modelyard.flavors._signature import infer_signature
from modelyard.flavors._sklearn import SklearnFlavor
from modelyard.flavors._torchscript import TorchScriptFlavor
from modelyard.flavors._xgboost import XGBoostFlavor


def _registry() -> dict[str, Flavor]:
    flavors: list[Flavor] = [
        XGBoostFlavor(),
        LightGBMFlavor(),
        OnnxFlavor(),
        TorchScriptFlavor(),
        SklearnFlavor(),
        PythonFlavor(),
        PickleFlavor(),
        *(BuiltinFlavor(name) for name in ALGORITHMS),
    ]
    return {flavor.name: flavor for flavor in flavors}


FLAVORS: dict[str, Flavor] = _registry()
"""Flavor name -> implementation. Add an entry to support another kind of model; when
``save_model`` infers a flavor, built-in folders are tried first, then this dict in order."""


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; :class:`InvalidInput` listing the known ones otherwise."""
    flavor = FLAVORS.get(name)
    if flavor is None:
        known = ", ".join(sorted(n for n in FLAVORS if not n.startswith(PREFIX)))
        raise InvalidInput(
            f"unknown flavor {name!r}; known: {known}, and {PREFIX}<algorithm> for "
            f"{', '.join(sorted(ALGORITHMS))}"
        )
    return flavor


def infer_flavor(model: Any) -> str:
    """The flavor that saves ``model``, from its type (or, for a path, its kind of file)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir() and (algorithm := algorithm_of(path)) is not None:
            return PREFIX + algorithm
        if not path.exists():
            raise NotFound(f"{str(path)!r} does not exist")
    for name, flavor in FLAVORS.items():
        if not name.startswith(PREFIX) and flavor.matches(model):
            return name
    what = (
        f"the path {str(model)!r}"
        if isinstance(model, (str, Path))
        else f"a {type(model).__module__}.{type(model).__qualname__}"
    )
    raise InvalidInput(
        f"cannot tell which flavor saves {what}; "
        f"pass flavor= one of {', '.join(n for n in FLAVORS if not n.startswith(PREFIX))} "
        "(pickle also needs allow_pickle=True)"
    )


def _digests(folder: Path) -> dict[str, str]:
    return {rel: sha256_file(path) for rel, path in collect_files(folder) if rel != MODEL_FILE}


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    flavor: str | None = None,
    sample_input: Any = None,
    allow_pickle: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> ModelDescriptor:
    """Save ``model`` into the folder ``path`` and return its descriptor.

    ``path`` must not exist or be an empty folder; the files are written into a temporary
    sibling folder that is renamed into place when complete, so a failed save leaves
    nothing behind. The one exception is a built-in algorithm's model folder saved onto
    itself: then only :data:`MODEL_FILE` is added. With ``sample_input`` the signature is
    inferred from it and from the model's prediction for it. ``extra`` is stored in the
    descriptor (flavors read options from it: ``entry_point`` for python,
    ``xgboost_format`` for xgboost). Raises InvalidInput (bad model or options),
    UntrustedModel (pickle without ``allow_pickle``), Conflict (``path`` not empty).
    """
    name = flavor or infer_flavor(model)
    implementation = get_flavor(name)
    target = Path(path)
    try:
        json.dumps(dict(extra or {}), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"extra must be a JSON object: {exc}") from None
    options = SaveOptions(
        allow_pickle=allow_pickle, extra=dict(extra or {}), sample_input=sample_input
    )
    in_place = (
        isinstance(implementation, BuiltinFlavor)
        and isinstance(model, (str, Path))
        and target.exists()
        and Path(model).resolve() == target.resolve()
    )
    if in_place:
        saved = implementation.save(model, target, options)
        return _finish(target, name, saved, sample_input, options)
    if isinstance(model, (str, Path)) and target.resolve().is_relative_to(Path(model).resolve()):
        raise InvalidInput(
            f"cannot save {str(model)!r} into {str(target)!r}, a folder inside it; "
            "choose a folder outside the model's own files"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{str(target)!r} already exists and is not an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        saved = implementation.save(model, work, options)
        descriptor = _finish(work, name, saved, sample_input, options)
        try:
            os.replace(work, target)  # replaces an empty folder, never a non-empty one
        except OSError as exc:
            raise Conflict(
                f"{str(target)!r} was filled by someone else while saving: {exc.strerror}"
            ) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return descriptor


def _finish(
    folder: Path, name: str, saved: Any, sample_input: Any, options: SaveOptions
) -> ModelDescriptor:
    files = _digests(folder)  # before any prediction can write into the folder
    signature = saved.signature
    if sample_input is not None:
        output = None
        if saved.predict is not None:
            try:
                output = saved.predict(sample_input)
            except ModelyardError:
                raise
            except Exception as exc:  # the model's own error, whatever its library raises
                raise InvalidInput(
                    f"the model could not predict the sample input: {type(exc).__name__}: {exc}"
                ) from exc
        signature = infer_signature(sample_input, output)
    descriptor = ModelDescriptor(
        flavor=name,
        files=files,
        signature=signature,
        framework=saved.framework,
        task=saved.task,
        classes=saved.classes,
        extra={**options.extra, **saved.extra},  # the flavor's own keys win
    )
    write_descriptor(folder, descriptor)
    return descriptor


def read_descriptor(path: str | os.PathLike[str]) -> ModelDescriptor:
    """The descriptor of the saved model folder ``path``.

    A folder written by a built-in algorithm job that has no :data:`MODEL_FILE` yet gets
    one derived from its ``metadata.json`` and ``signature.json``, with the digests of its
    files as they are now (so only ``expected_digests`` can vouch for them). Raises
    NotFound (no folder, or neither file) and InvalidInput (a malformed descriptor).
    """
    folder = require_folder(path)
    descriptor_path = folder / MODEL_FILE
    if descriptor_path.is_file():
        return parse_descriptor(descriptor_path.read_bytes(), str(descriptor_path))
    algorithm = algorithm_of(folder)
    if algorithm is None:
        raise NotFound(
            f"{str(folder)!r} holds no {MODEL_FILE} and is not a built-in algorithm's model "
            "folder (no metadata.json naming a known algorithm)"
        )
    saved = describe(folder, algorithm)
    return ModelDescriptor(
        flavor=PREFIX + algorithm,
        files=_digests(folder),
        signature=saved.signature,
        framework=saved.framework,
        task=saved.task,
        classes=saved.classes,
        extra=saved.extra,
    )


def verify_files(
    folder: Path, descriptor: ModelDescriptor, expected: Mapping[str, str] | None = None
) -> None:
    """Check every file against the descriptor's digest and the registry's ``expected``.

    A missing or changed file raises ArtifactCorrupted (the folder no longer is what was
    saved); a digest differing from ``expected`` raises UntrustedModel (it is not what
    the registry recorded).
    """
    actual: dict[str, str] = {}
    for rel, digest in descriptor.files.items():
        path = safe_join(folder, rel)
        if not path.is_file():
            raise ArtifactCorrupted(f"{rel} is missing from the model folder")
        actual[rel] = sha256_file(path)
        if actual[rel] != digest:
            raise ArtifactCorrupted(
                f"{rel} in the model folder has SHA-256 {actual[rel]}, not the {digest} recorded "
                f"in {MODEL_FILE}; the file was changed after the model was saved"
            )
    for rel, digest in (expected or {}).items():
        name = rel
        if name == MODEL_FILE:
            got = sha256_file(folder / MODEL_FILE) if (folder / MODEL_FILE).is_file() else None
        elif name in actual:
            got = actual[name]
        else:
            path = safe_join(folder, name)
            got = sha256_file(path) if path.is_file() else None
        if got is None:
            raise UntrustedModel(f"{name}, recorded by the registry, is missing from the model")
        if got != str(digest).lower():
            raise UntrustedModel(
                f"{name} has SHA-256 {got}, not the registry's {digest}; refusing to load it"
            )


def load_model(
    path: str | os.PathLike[str],
    *,
    trusted_types: Sequence[str] | None = None,
    allow_pickle: bool = False,
    expected_digests: Mapping[str, str] | None = None,
) -> LoadedModel:
    """Load the model saved in the folder ``path``.

    Every file is checked against its digest in the descriptor, and against
    ``expected_digests`` (relative path -> SHA-256, as the registry recorded them) when
    given, before any of it is read by a library. ``trusted_types`` extends the skops
    allow-list for this call; pickle needs ``allow_pickle=True`` and the pickle file's
    digest in ``expected_digests``. Raises NotFound, InvalidInput (unknown flavor,
    unreadable file), UntrustedModel, ArtifactCorrupted, ConfigurationError (the flavor's
    library is not installed).
    """
    if isinstance(trusted_types, str):
        raise InvalidInput("trusted_types must be a list of type names, not one string")
    folder = require_folder(path)
    descriptor = read_descriptor(folder)
    flavor = get_flavor(descriptor.flavor)
    verify_files(folder, descriptor, expected_digests)
    options = LoadOptions(
        trusted_types=tuple(trusted_types or ()),
        allow_pickle=allow_pickle,
        expected_digests=dict(expected_digests or {}),
    )
    return flavor.load(folder, descriptor, options)
