"""Custom Python models: a handler module whose code is saved with the model.

The handler defines ``load(model_dir) -> object`` and ``predict(obj, data)`` (or
SageMaker's ``model_fn(model_dir)`` and ``predict_fn(data, model)``), and optionally
``predict_proba(obj, data)``. It is given as a ``.py`` file or a folder: a folder that
has a ``code/`` subfolder is copied as it is (SageMaker's layout: artifacts at the root,
code in ``code/``); any other folder, or a single file, is copied into ``code/``. The
entry module is ``extra["entry_point"]`` (a path inside ``code/``), else the file given,
else the first of ``handler.py``, ``inference.py``, ``__init__.py`` that exists.

Loading **executes the handler's code** in the loading process. It is imported from the
saved folder as a fresh package with a unique name (``importlib``; ``sys.path`` is not
changed), so modules beside it are reachable with relative imports (``from . import x``).
Use this flavor only for code you trust, as you would any serving handler; the digest
check on load guarantees the code is the code that was registered, not that it is safe.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import shutil
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.core.paths import collect_files, safe_join
from modelyard.errors import InvalidInput
from modelyard.flavors._base import Flavor, LoadedModel, LoadOptions, Saved, SaveOptions
from modelyard.flavors._descriptor import ModelDescriptor

CODE_DIR = "code"
ENTRY_CANDIDATES = ("handler.py", "inference.py", "__init__.py")
LOAD_NAMES = ("load", "model_fn")
PREDICT_NAMES = ("predict", "predict_fn")


class PythonFlavor(Flavor):
    name = "python"

    def matches(self, model: Any) -> bool:
        if not isinstance(model, (str, Path)):
            return False
        path = Path(model)
        return path.suffix == ".py" or (
            path.is_dir()
            and ((path / CODE_DIR).is_dir() or any((path / c).is_file() for c in ENTRY_CANDIDATES))
        )

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        if not isinstance(model, (str, Path)):
            raise InvalidInput(
                "the python flavor saves a handler module: give the path of a .py file or "
                f"a folder, not a {type(model).__name__}"
            )
        source = Path(model)
        given_entry = options.extra.get("entry_point")
        if source.is_file():
            if source.suffix != ".py":
                raise InvalidInput(f"handler {str(source)!r} is not a .py file")
            (folder / CODE_DIR).mkdir()
            shutil.copyfile(source, folder / CODE_DIR / source.name)
            entry = str(given_entry or source.name)
        elif source.is_dir():
            collect_files(source)  # refuses links, devices and unsafe names before copying
            if (source / CODE_DIR).is_dir():
                shutil.copytree(source, folder, dirs_exist_ok=True)
            else:
                shutil.copytree(source, folder / CODE_DIR)
            entry = str(given_entry or "")
        else:
            raise InvalidInput(f"handler {str(source)!r} does not exist")
        code = folder / CODE_DIR
        if not entry:
            found = [c for c in ENTRY_CANDIDATES if (code / c).is_file()]
            if not found:
                raise InvalidInput(
                    f"no entry module in {str(source)!r}: name it with extra="
                    "{'entry_point': 'file.py'} or add one of " + ", ".join(ENTRY_CANDIDATES)
                )
            entry = found[0]
        entry_path = safe_join(code, entry)
        if not entry_path.is_file() or entry_path.suffix != ".py":
            raise InvalidInput(f"entry point {entry!r} is not a .py file inside code/")
        _check_functions(entry_path)
        saved_folder = folder

        def predict(data: Any) -> Any:
            # Only to infer the output signature from the sample input, at save time.
            return self._loaded(saved_folder, entry, None).predict(data)

        return Saved(
            framework=self.versions(),
            extra={"entry_point": entry_path.relative_to(code.resolve()).as_posix()},
            predict=predict,
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        entry = descriptor.extra.get("entry_point")
        if not isinstance(entry, str) or not entry:
            raise InvalidInput("the python model's descriptor has no extra.entry_point")
        return self._loaded(folder, entry, descriptor)

    def _loaded(self, folder: Path, entry: str, descriptor: ModelDescriptor | None) -> LoadedModel:
        module = _import(folder, entry)
        _, load_fn = _function(module, LOAD_NAMES, entry)
        predict_name, predict_fn = _function(module, PREDICT_NAMES, entry)
        try:
            obj = load_fn(str(folder))
        except Exception as exc:  # the handler's own code
            problem = f"{type(exc).__name__}: {exc}"
            raise InvalidInput(f"the handler's load(model_dir) failed: {problem}") from exc
        sagemaker_order = predict_name == "predict_fn"

        def predict(data: Any) -> Any:
            result = predict_fn(data, obj) if sagemaker_order else predict_fn(obj, data)
            return result if isinstance(result, (list, np.ndarray)) else np.asarray(result)

        proba = None
        proba_fn = getattr(module, "predict_proba", None)
        if callable(proba_fn):

            def proba(data: Any) -> Any:
                return np.asarray(proba_fn(obj, data))

        desc = descriptor or ModelDescriptor(flavor=self.name)
        return LoadedModel(desc, obj, predict, proba, path=folder)


def _check_functions(path: Path) -> None:
    """Check, without running it, that the module defines a load and a predict function."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"handler {path.name} does not parse: {exc}") from None
    defined = {
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    for names in (LOAD_NAMES, PREDICT_NAMES):
        if not defined.intersection(names):
            raise InvalidInput(
                f"handler {path.name} defines none of {', '.join(names)}; it needs "
                "load(model_dir) and predict(obj, data) (or model_fn and predict_fn)"
            )


def _import(folder: Path, entry: str) -> types.ModuleType:
    """Import ``code/<entry>`` as a submodule of a fresh package named uniquely."""
    code = folder / CODE_DIR
    path = safe_join(code, entry)
    if not path.is_file():
        raise InvalidInput(f"entry point {entry!r} is missing from {str(code)!r}")
    package = f"_modelyard_model_{uuid.uuid4().hex}"
    init = code / "__init__.py"
    spec = None
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            package, init, submodule_search_locations=[str(code.resolve())]
        )
    if spec is not None:
        root = importlib.util.module_from_spec(spec)
    else:  # no __init__.py: a bare package whose modules live in code/
        root = types.ModuleType(package)
        root.__path__ = [str(code.resolve())]
    sys.modules[package] = root
    parts = path.relative_to(code.resolve()).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    name = ".".join((package, *parts))
    # No __pycache__ inside the model folder: it may be shared, read-only or verified.
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        if spec is not None and spec.loader is not None:
            spec.loader.exec_module(root)
        return importlib.import_module(name)
    except InvalidInput:
        raise
    except Exception as exc:
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]
        raise InvalidInput(
            f"importing handler {entry!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.dont_write_bytecode = writes_bytecode


def _function(module: types.ModuleType, names: tuple[str, ...], entry: str) -> tuple[str, Any]:
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return name, fn
    raise InvalidInput(f"handler {entry!r} defines none of {', '.join(names)}")
