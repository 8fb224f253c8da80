"""The domains' schemas are :class:`~modelyard.core.schema.Schema` models, built on first use.

Deferring the build (``defer_build``) is what keeps a CLI command that lists runs from
building the hundred-odd models it imports but never validates. These tests keep it so: a
new model declared on ``BaseModel`` directly, or a base that stops deferring, fails here;
and since a deferred model's mistakes (an annotation that names nothing) would otherwise
surface only at its first use, every model is built here.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

import modelyard
from modelyard.core.schema import Schema
from modelyard.domains import operations

PACKAGE = Path(modelyard.__file__).parent
# The modules the remote client imports for the operations' inputs and outputs (every
# domain's schemas, and the models those name).
SCHEMA_MODULES = [
    *sorted(f"modelyard.{p.parent.name}.schemas" for p in PACKAGE.glob("*/schemas.py")),
    "modelyard.core.idempotency",
    "modelyard.data.diff",
    "modelyard.data.files",
    "modelyard.data.formats",
    "modelyard.data.profiling",
    "modelyard.data.quality",
    "modelyard.transform.config",
]
# mlflow_compat answers the MLflow REST API on the server; the CLI never imports it.
SERVER_ONLY = {"modelyard.mlflow_compat.schemas"}


def models_of(module_name: str) -> list[type[BaseModel]]:
    module = importlib.import_module(module_name)
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module_name
    ]


def test_every_model_the_client_imports_is_a_deferred_schema() -> None:
    plain = [
        f"{m.__module__}.{m.__qualname__}"
        for name in SCHEMA_MODULES
        if name not in SERVER_ONLY
        for m in models_of(name)
        if not issubclass(m, Schema) or not m.model_config.get("defer_build")
    ]
    assert plain == []
    assert "modelyard.tracking.schemas" in SCHEMA_MODULES  # the glob found the domains


def _all_schemas() -> list[type[Schema]]:
    found: list[type[Schema]] = []
    stack: list[type[Schema]] = [Schema]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                stack.append(sub)
    return found


def test_every_schema_builds() -> None:
    operations()  # every domain's service, so every schema they declare is defined
    for name in SCHEMA_MODULES:
        importlib.import_module(name)
    models = _all_schemas()
    assert len(models) > 100
    for model in models:
        # raise_errors: an annotation that names nothing, a bad constraint, fails here.
        model.model_rebuild(raise_errors=True)
        assert model.__pydantic_complete__, model


def test_importing_the_schemas_builds_none_and_first_use_builds_one() -> None:
    code = f"""
import importlib
for name in {SCHEMA_MODULES!r}:
    importlib.import_module(name)
from modelyard.core.schema import Schema
stack, seen = [Schema], []
while stack:
    for sub in stack.pop().__subclasses__():
        seen.append(sub)
        stack.append(sub)
built = [m.__qualname__ for m in seen if m.__pydantic_complete__]
assert len(seen) > 100, len(seen)
assert built == [], built
from modelyard.tracking.schemas import RunList
RunList.model_validate({{"runs": [], "total": 0}})
assert RunList.__pydantic_complete__
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
