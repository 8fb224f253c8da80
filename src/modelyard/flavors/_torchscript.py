"""PyTorch models as TorchScript (``torch.jit.save`` / ``torch.jit.load``).

TorchScript archives hold the model's code as TorchScript and its weights as tensors;
``torch.jit.load`` rebuilds them without unpickling arbitrary Python objects. PyTorch is
imported only when a model of this flavor is saved or loaded; without it, both fail
with a :class:`~modelyard.errors.ConfigurationError` saying what to install.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.flavors._base import (
    Flavor,
    LoadedModel,
    LoadOptions,
    Saved,
    SaveOptions,
    one_file,
    require,
    type_modules,
)
from modelyard.flavors._descriptor import ModelDescriptor
from modelyard.flavors._signature import as_columns, as_matrix

FILE = "model.pt"
_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def _torch() -> Any:
    return require("torch", "torchscript", _INSTALL)


def _is_path(model: Any) -> bool:
    return isinstance(model, (str, Path)) and str(model).endswith((".pt", ".pth"))


class TorchScriptFlavor(Flavor):
    name = "torchscript"
    libraries = ("torch",)

    def matches(self, model: Any) -> bool:
        return _is_path(model) or "torch" in type_modules(model)

    def save(self, model: Any, folder: Path, options: SaveOptions) -> Saved:
        torch = _torch()
        if _is_path(model):
            source = Path(model)
            if not source.is_file():
                raise InvalidInput(f"TorchScript file {str(source)!r} does not exist")
            shutil.copyfile(source, folder / FILE)
            module = _load(torch, folder / FILE)
        else:
            if not isinstance(model, torch.jit.ScriptModule):
                raise InvalidInput(
                    f"the torchscript flavor saves a torch.jit.ScriptModule, not "
                    f"{type(model).__name__}; convert it with torch.jit.script(model) or "
                    "torch.jit.trace(model, example)"
                )
            torch.jit.save(model, str(folder / FILE))
            module = model
        return Saved(framework=self.versions(), predict=_predictor(torch, module))

    def load(self, folder: Path, descriptor: ModelDescriptor, options: LoadOptions) -> LoadedModel:
        torch = _torch()
        module = _load(torch, one_file(folder, descriptor, [FILE]))
        signature = descriptor.signature
        order = signature.column_names if signature else None
        return LoadedModel(descriptor, module, _predictor(torch, module, order), path=folder)


def _load(torch: Any, path: Path) -> Any:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise InvalidInput(f"{path.name} is not a TorchScript archive: {exc}") from None
    module.eval()
    return module


def _predictor(torch: Any, module: Any, order: list[str] | None = None) -> Any:
    def predict(data: Any) -> Any:
        columns = as_columns(data)
        usable = columns is not None and order and all(n in columns for n in order)
        array = as_matrix(data, order if usable else None)
        if array.dtype == np.float64:
            array = array.astype(np.float32)  # PyTorch models are float32 by default
        with torch.no_grad():
            result = module(torch.as_tensor(array))
        if isinstance(result, (tuple, list)):
            result = result[0]
        return result.detach().cpu().numpy()

    return predict
