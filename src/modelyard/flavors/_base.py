"""The flavor interface, the loaded-model wrapper and the registry of flavors."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from modelyard.errors import ConfigurationError, InvalidInput, ModelyardError
from modelyard.flavors._descriptor import ModelDescriptor

Predict = Callable[[Any], Any]


class LoadedModel:
    """A model loaded from a saved folder, with one calling convention for every flavor.

    ``predict(data)`` returns a NumPy array (or a list, for handlers that return one);
    ``predict_proba`` is a callable returning class probabilities (one column per class
    in :attr:`classes` order) where the model gives them, and ``None`` otherwise.
    ``native`` is the underlying object (an estimator, a booster, an ONNX Runtime
    session, a TorchScript module, the handler's model object).
    """

    def __init__(
        self,
        descriptor: ModelDescriptor,
        native: Any,
        predict: Predict,
        predict_proba: Predict | None = None,
        *,
        path: Path | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.native = native
        self.path = path
        self._predict = predict
        self.predict_proba: Predict | None = (
            None if predict_proba is None else _refusing_bad_input(predict_proba)
        )

    @property
    def flavor(self) -> str:
        return self.descriptor.flavor

    @property
    def classes(self) -> list[Any] | None:
        return self.descriptor.classes

    def predict(self, data: Any) -> Any:
        """Predictions for ``data`` (see :mod:`modelyard.flavors._signature` for formats).

        Data the model refuses (the library raises ``ValueError`` or ``TypeError``, as
        scikit-learn, XGBoost and NumPy do for wrong shapes and types) raises
        :class:`InvalidInput` with the library's message.
        """
        return _refusing_bad_input(self._predict)(data)

    def __repr__(self) -> str:
        return f"LoadedModel(flavor={self.flavor!r}, native={type(self.native).__name__})"


def _refusing_bad_input(fn: Predict) -> Predict:
    def call(data: Any) -> Any:
        try:
            return fn(data)
        except ModelyardError:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"the model refused the input: {exc}") from exc

    return call


@dataclass
class Saved:
    """What a flavor's :meth:`Flavor.save` reports besides the files it wrote."""

    framework: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    classes: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Predicts with the in-memory model, to infer the output signature from a sample.
    predict: Predict | None = None
    # A signature the model itself declares (built-in algorithms, ONNX graphs).
    signature: Any = None


@dataclass(frozen=True)
class LoadOptions:
    """What the caller of ``load_model`` trusts: extra skops types, pickle, digests."""

    trusted_types: Sequence[str] = ()
    allow_pickle: bool = False
    expected_digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveOptions:
    allow_pickle: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    sample_input: Any = None


class Flavor(abc.ABC):
    """How one kind of model is written to a folder and read back.

    :meth:`save` writes files into an empty folder (the descriptor is written by
    ``save_model`` afterwards, with the digests of everything the flavor wrote);
    :meth:`load` reads them back after every file was checked against its digest.
    Libraries are imported inside the methods, so importing the registry imports none.
    """

    name: str = ""
    libraries: tuple[str, ...] = ()

    def matches(self, model: Any) -> bool:
        """Whether ``model`` (an object or a path) is one this flavor saves."""
        return False

    @abc.abstractmethod
    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        """Write ``model``'s files into ``folder`` (existing and empty)."""

    @abc.abstractmethod
    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        """Read the model saved in ``folder`` (its files already verified)."""

    def versions(self) -> dict[str, str]:
        """Installed versions of this flavor's libraries (recorded in the descriptor)."""
        found: dict[str, str] = {}
        for name in ("numpy", *self.libraries):
            try:
                found[name] = importlib_metadata.version(name)
            except importlib_metadata.PackageNotFoundError:
                continue
        return found


def type_modules(model: Any) -> list[str]:
    """The top-level package of every class in ``type(model)``'s MRO, most derived first."""
    return [cls.__module__.split(".", 1)[0] for cls in type(model).__mro__]


def require(module: str, flavor: str, install: str) -> Any:
    """Import ``module`` or raise ConfigurationError saying which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(
            f"the {flavor} flavor needs {module}, which is not installed here; "
            f"install it with: {install}"
        ) from None


def one_file(folder: Path, descriptor: ModelDescriptor, candidates: Sequence[str]) -> Path:
    """The first of ``candidates`` that the descriptor lists; InvalidInput if none is."""
    for name in candidates:
        if name in descriptor.files:
            return folder / name
    raise InvalidInput(
        f"the {descriptor.flavor} model in {str(folder)!r} lists none of "
        f"{', '.join(candidates)} in its files"
    )


def task_from_classes(classes: Sequence[Any] | None) -> str | None:
    return "classification" if classes is not None else None


def json_classes(values: Any) -> list[Any]:
    """Class labels as JSON scalars (NumPy integers, floats and strings become Python's)."""
    out: list[Any] = []
    for value in list(values):
        item = value.item() if hasattr(value, "item") else value
        if not isinstance(item, (str, int, float, bool)):
            item = str(item)
        out.append(item)
    return out
