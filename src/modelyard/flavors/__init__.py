"""Model flavors: save and load models in safe formats, with signatures and digests.

A saved model is a folder: the model's files plus :data:`MODEL_FILE`, a descriptor
naming the flavor, the SHA-256 of every file, the signature, library versions, task and
classes. This package is a library (no tables, no operations): the registry, the model
server and the SDK use it.

Flavors: ``sklearn`` (skops, loaded against a server-side allow-list of types),
``xgboost`` (UBJSON/JSON), ``lightgbm`` (text), ``onnx`` (ONNX Runtime), ``torchscript``,
``python`` (a handler module; runs its code), ``builtin:<algorithm>`` (a built-in
algorithm's model folder) and ``pickle`` (only when explicitly allowed and vouched for
by the registry's digest). See ``docs/flavors.md``.
"""

from __future__ import annotations

from modelyard.errors import UntrustedModel
from modelyard.flavors._api import (
    FLAVORS,
    get_flavor,
    infer_flavor,
    load_model,
    read_descriptor,
    save_model,
    verify_files,
)
from modelyard.flavors._base import Flavor, LoadedModel, LoadOptions, Saved, SaveOptions
from modelyard.flavors._descriptor import (
    MODEL_FILE,
    ModelDescriptor,
    Signature,
    TensorSpec,
    sha256_file,
)
from modelyard.flavors._signature import as_columns, as_matrix, infer_signature, validate
from modelyard.flavors._sklearn import DEFAULT_TRUSTED_TYPES, import_skops

__all__ = [
    "DEFAULT_TRUSTED_TYPES",
    "FLAVORS",
    "MODEL_FILE",
    "Flavor",
    "LoadOptions",
    "LoadedModel",
    "ModelDescriptor",
    "SaveOptions",
    "Saved",
    "Signature",
    "TensorSpec",
    "UntrustedModel",
    "as_columns",
    "as_matrix",
    "get_flavor",
    "import_skops",
    "infer_flavor",
    "infer_signature",
    "load_model",
    "read_descriptor",
    "save_model",
    "sha256_file",
    "validate",
    "verify_files",
]
