"""SageMaker inference handler scripts (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``).

A script written for SageMaker's scikit-learn / PyTorch containers runs unchanged:

- ``model_fn(model_dir)`` loads the model (default: ``modelyard.flavors.load_model``);
- ``input_fn(request_body, request_content_type)`` gets the raw body as ``bytes``
  (default: the server's own decoder, giving a 2-D numpy array);
- ``predict_fn(input_data, model)`` (default: ``model.predict(input_data)``);
- ``output_fn(prediction, accept)`` returns ``bytes``/``str`` (sent as ``accept``) or a
  ``(body, content_type)`` pair (default: the server's encoder, choosing by ``Accept``).

The script's folder goes on ``sys.path`` (as in SageMaker, so it can import modules
beside it), and importing it runs its code: serve only scripts you trust.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.serving.errors import ModelFailed

_counter = 0


def import_script(path: Path) -> ModuleType:
    """Import a handler script under a unique module name (two replicas never collide)."""
    global _counter
    if not path.is_file():
        raise InvalidInput(f"handler script {str(path)!r} does not exist")
    _counter += 1
    name = f"modelyard_handler_{_counter}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"handler script {str(path)!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _fn(module: ModuleType, name: str) -> Callable[..., Any] | None:
    value = getattr(module, name, None)
    return value if callable(value) else None


@dataclass
class Handler:
    """The functions a script defines; ``None`` where the server's default applies."""

    path: Path
    model_fn: Callable[..., Any] | None
    input_fn: Callable[..., Any] | None
    predict_fn: Callable[..., Any] | None
    output_fn: Callable[..., Any] | None

    @classmethod
    def load(cls, path: Path) -> Handler:
        module = import_script(path)
        handler = cls(
            path,
            _fn(module, "model_fn"),
            _fn(module, "input_fn"),
            _fn(module, "predict_fn"),
            _fn(module, "output_fn"),
        )
        if handler.model_fn is None and handler.predict_fn is None:
            raise InvalidInput(
                f"handler script {path.name!r} defines none of model_fn, input_fn, "
                "predict_fn, output_fn"
            )
        return handler

    def defined(self) -> list[str]:
        names = ("model_fn", "input_fn", "predict_fn", "output_fn")
        return [n for n in names if getattr(self, n) is not None]


def normalise_output(result: Any, accept: str) -> tuple[bytes, str]:
    """``output_fn``'s answer as (body, content type), as SageMaker's toolkit reads it."""
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        return result.encode(), str(content_type)
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), str(content_type)
    raise ModelFailed(
        f"output_fn returned {type(result).__name__}; it must return bytes, str, "
        "or a (body, content_type) pair"
    )
