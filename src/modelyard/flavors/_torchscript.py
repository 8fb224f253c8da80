"""PyTorch models as TorchScript (``torch.jit.save`` / ``torch.jit.load``).

A TorchScript archive is a zip holding the module's code as TorchScript source
(``code/``), its tensors, and ``constants.pkl``/``data.pkl``, which PyTorch reads with
its own C++ unpickler: that one rebuilds tensors and TorchScript classes only, and a
Python function or class named in the file (``os.system``) is a load error, not a call.
Loading therefore runs TorchScript (PyTorch operators), never Python code from the file.

A ``torch.save`` file (an ``nn.Module`` pickled whole) unpickles arbitrary Python, so
this flavor treats it as the pickle flavor does: saved only with ``allow_pickle=True``,
loaded only with ``allow_pickle=True`` and the registry's digest of ``model.pt``. Which
of the two a file is, is read from the file itself, never from the descriptor.

PyTorch is imported only when a model of this flavor is saved or loaded; without it,
both fail with a :class:`~modelyard.errors.ConfigurationError` saying what to install.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput, UntrustedModel
from modelyard.flavors._base import (
    Flavor,
    LoadedModel,
    LoadOptions,
    Predict,
    Saved,
    SaveOptions,
    one_file,
    require,
    type_modules,
)
from modelyard.flavors._descriptor import ModelDescriptor, Signature
from modelyard.flavors._pickle import vouch
from modelyard.flavors._signature import as_columns, as_matrix, infer_signature

FILE = "model.pt"
_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
_PICKLE = "a torch.save pickle, not a TorchScript archive"
# The tensor dtype for each signature dtype. float64 becomes float32: NumPy's default
# float is PyTorch's double, which a module built with default layers refuses.
_TENSOR_DTYPES = {
    "bool": "bool",
    "uint8": "uint8",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "float16": "float16",
    "float32": "float32",
    "float64": "float32",
}


def _torch() -> Any:
    return require("torch", "torchscript", _INSTALL)


def _is_path(model: Any) -> bool:
    return isinstance(model, (str, Path)) and str(model).endswith((".pt", ".pth"))


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive: a zip with ``constants.pkl`` and ``code/``.

    ``torch.save`` also writes zips, but without either entry.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    has_constants = any(name.split("/", 1)[-1] == "constants.pkl" for name in names)
    return has_constants and any("/code/" in name for name in names)


class TorchScriptFlavor(Flavor):
    name = "torchscript"
    libraries = ("torch",)

    def matches(self, model: Any) -> bool:
        return _is_path(model) or "torch" in type_modules(model)

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        torch = _torch()
        target = folder / FILE
        if _is_path(model):
            source = Path(model)
            if not source.is_file():
                raise InvalidInput(f"TorchScript file {str(source)!r} does not exist")
            shutil.copyfile(source, target)
        elif isinstance(model, torch.jit.ScriptModule):
            torch.jit.save(model, str(target))
        elif isinstance(model, torch.nn.Module) and options.allow_pickle:
            torch.save(model, target)
        else:
            raise InvalidInput(
                f"the torchscript flavor saves a torch.jit.ScriptModule, not "
                f"{type(model).__name__}; convert it with torch.jit.script(model) or "
                "torch.jit.trace(model, example) (or pass allow_pickle=True to pickle an "
                "nn.Module with torch.save, which loads only with the registry's digest)"
            )
        # Predict with what was written, read back as a load will read it.
        if is_torchscript(target):
            module, kind = _load_script(torch, target), "torchscript"
        elif options.allow_pickle:
            module, kind = _unpickle(torch, target.read_bytes(), FILE), "pickle"
        else:
            raise UntrustedModel(
                f"{str(model)!r} is {_PICKLE}, and unpickling runs arbitrary code; save a "
                "TorchScript archive (torch.jit.save of torch.jit.script(model)), or pass "
                "allow_pickle=True"
            )
        sample = options.sample_input
        signature = infer_signature(sample) if sample is not None else None
        return Saved(
            framework=self.versions(),
            extra={"format": kind},
            predict=_predictor(torch, module, signature),
        )

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        torch = _torch()
        path = one_file(folder, descriptor, [FILE])
        if is_torchscript(path):
            module = _load_script(torch, path)
        else:
            # Read once, so the bytes unpickled are the bytes whose digest was checked.
            data = path.read_bytes()
            vouch(FILE, _PICKLE, options, lambda: hashlib.sha256(data).hexdigest())
            module = _unpickle(torch, data, FILE)
        predict = _predictor(torch, module, descriptor.signature)
        return LoadedModel(descriptor, module, predict, path=folder)


def _load_script(torch: Any, path: Path) -> Any:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:  # torch.jit.Error is a RuntimeError
        reason = " ".join(str(exc).split())
        raise InvalidInput(f"{path.name} is not a loadable TorchScript archive: {reason}") from None
    module.eval()
    return module


def _unpickle(torch: Any, data: bytes, name: str) -> Any:
    """The ``nn.Module`` pickled in ``data`` (whose use the caller has vouched for)."""
    try:
        module = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # whatever the pickled code or a missing class raises
        raise InvalidInput(f"{name} does not unpickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise InvalidInput(
            f"{name} holds a {type(module).__name__}, not a torch.nn.Module (a state_dict "
            "holds weights without the module's code); save the module, scripted"
        )
    module.eval()
    return module


def _input_dtype(signature: Signature | None) -> np.dtype[Any]:
    """One dtype for the input tensor: the signature's (float64 as float32), else float32."""
    kinds = (
        {_TENSOR_DTYPES.get(s.dtype, "float32") for s in signature.inputs} if signature else set()
    )
    return np.dtype(kinds.pop() if len(kinds) == 1 else "float32")


def _predictor(torch: Any, module: Any, signature: Signature | None) -> Predict:
    """``predict(data)``: ``data`` as one tensor (columns in signature order), the module's
    first output as a NumPy array. Errors the module raises for the input (a wrong width
    or dtype) become InvalidInput."""
    order = signature.column_names if signature else None
    dtype = _input_dtype(signature)

    def predict(data: Any) -> Any:
        columns = as_columns(data)
        usable = columns is not None and order and all(n in columns for n in order)
        tensor = torch.as_tensor(as_matrix(data, order if usable else None, dtype))
        try:
            with torch.no_grad():
                result = module(tensor)
        except RuntimeError as exc:  # TorchScript reports shape and dtype errors so
            reason = " ".join(str(exc).split())
            raise InvalidInput(f"the PyTorch model refused the input: {reason}") from None
        return _as_array(torch, result)

    return predict


def _as_array(torch: Any, result: Any) -> Any:
    if isinstance(result, (tuple, list)) and result:
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise InvalidInput(
            f"the PyTorch model returned a {type(result).__name__}; the torchscript flavor "
            "serves modules that return a tensor (or a tuple or list starting with one)"
        )
    if result.dtype == torch.bfloat16:  # NumPy has no bfloat16
        result = result.float()
    return result.detach().cpu().numpy()
