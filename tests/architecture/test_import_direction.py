"""Import direction: core ← compute ← domains ← runtime ← server / client / cli.

Every ``import`` and ``from … import`` in every module under ``src/modelyard`` (at module
level, in functions, under ``if TYPE_CHECKING``) is read with :mod:`ast`, and each
modelyard module it names is checked against the layers below:

- a module imports only its own layer or lower ones (``compute`` only ``core``);
- a domain uses another domain only through that domain's ``schemas`` module, its
  package (``__init__``) or a module in :data:`PUBLIC_MODULES`, and a library domain
  (flavors, serving, algorithms) through its public modules; never a store, a service
  or a ``_private`` module;
- ``jobs`` and ``endpoints`` never import each other (what both need is in ``compute``).

The known remaining exceptions are listed in :data:`EXCEPTIONS`, each with its reason. An
import that breaks a rule and is not listed fails the test; so does a listed exception
that no longer occurs (delete it: the list only shrinks).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "modelyard"

CORE = {"core", "errors", "config", "types"}
COMPUTE = {"compute"}
DOMAINS = {
    "security",
    "artifacts",
    "data",
    "jobs",
    "tracking",
    "lineage",
    "registry",
    "endpoints",
    "transform",
    "algorithms",
    "flavors",
    "serving",
}
# Libraries: no tables, no operations; their public modules are their API.
LIBRARIES = {"algorithms", "flavors", "serving"}
RUNTIME = {"runtime", "domains", "migrations"}
TOP = {"server", "client", "cli", "mlflow_compat", "console", "__main__"}
LAYERS = {
    **dict.fromkeys(CORE, 0),
    **dict.fromkeys(COMPUTE, 1),
    **dict.fromkeys(DOMAINS, 2),
    **dict.fromkeys(RUNTIME, 3),
    **dict.fromkeys(TOP, 4),
}
NAMES = ("core", "compute", "domain", "runtime", "server/client/cli")
# Modules a domain offers its neighbours besides schemas and its package: why each is one.
PUBLIC_MODULES: dict[str, str] = {
    "modelyard.data.files": "the dataset file models, apart from data.schemas so that jobs "
    "and transforms name files without loading the profile and report models",
    "modelyard.jobs.kinds": "the job-kind registry: a package registers its kinds there "
    "(transform; later tuning, monitoring…), and jobs/__init__ stays light for job processes",
}
# Never, not even a schema: what job attempts and endpoint replicas share is compute.
FORBIDDEN = {("jobs", "endpoints"), ("endpoints", "jobs")}

# (importing module, imported module): why it is still there. Only ever delete entries.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # Nested calls into another domain's operations: to become ctx.call(op, req), which
    # checks the caller's permission in one place (issue 15, deliverable 5).
    ("modelyard.endpoints.service", "modelyard.registry.service"): "nested call: a "
    "variant's model version is read through the registry's operation",
    ("modelyard.jobs.service", "modelyard.data.service"): "nested call: a job's input "
    "channels are resolved through the datasets operations",
    ("modelyard.registry.service", "modelyard.jobs.service"): "nested call: "
    "register-from-job reads the job",
    ("modelyard.registry.service", "modelyard.tracking.service"): "nested call: "
    "register-from-run reads the run",
    ("modelyard.tracking.service", "modelyard.data.service"): "nested call: a run's "
    "inputs are checked through the datasets operations",
    ("modelyard.transform.service", "modelyard.data.service"): "nested call: outputs are "
    "registered as dataset versions",
    ("modelyard.transform.service", "modelyard.jobs.service"): "nested call: a transform "
    "is a job of kind transform (to become a job-kind registry entry, deliverable 4)",
    ("modelyard.transform.service", "modelyard.registry.service"): "nested call: the "
    "model version to transform with is read through the registry",
    ("modelyard.endpoints.history", "modelyard.security.service"): "the endpoints "
    "controller writes the audit events of its decisions with security's record_audit, "
    "in the decision's transaction (for the controller kit to offer)",
    ("modelyard.jobs.ledger", "modelyard.security.service"): "the jobs controller audits "
    "each attempt end with security's record_audit, in the transaction of the change (for "
    "the controller kit to offer)",
    # A function API that fills another domain's records in the caller's transaction
    # (docs/architecture.md, "Lineage"); to be exported from tracking/__init__.
    ("modelyard.jobs.ledger", "modelyard.tracking.recording"): "a job's tracked run is "
    "opened, fed and closed in the job's own transaction",
    ("modelyard.jobs.service", "modelyard.tracking.recording"): "a job's tracked run is "
    "opened in the submit transaction",
    ("modelyard.tracking.service", "modelyard.artifacts.streams"): "run artifacts are "
    "served with the artifacts domain's streaming helper",
    # Private names across packages (issue 15, deliverable 6).
    ("modelyard.algorithms.random_cut_forest", "modelyard.flavors._sklearn"): "skops "
    "loaded the flavors' way (import_skops, now also exported by modelyard.flavors)",
    ("modelyard.algorithms.text_classification", "modelyard.flavors._sklearn"): "skops "
    "loaded the flavors' way (import_skops, now also exported by modelyard.flavors)",
    ("modelyard.registry.packaging", "modelyard.flavors._content"): "the python flavor's "
    "handler script name, to be exported by modelyard.flavors",
    ("modelyard.registry.service", "modelyard.flavors._content"): "content flavors and "
    "their user-code check, to be exported by modelyard.flavors",
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (the deepest module the statement names)
    path: Path
    line: int

    def __str__(self) -> str:
        where = self.path.relative_to(SRC.parent)
        return f"{where}:{self.line}: {self.importer} imports {self.imported}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _package(importer: str, level: int) -> str:
    parts = importer.split(".")
    is_package = (SRC.joinpath(*parts) / "__init__.py").is_file()
    keep = len(parts) - level + (1 if is_package else 0)
    return ".".join(parts[:keep])


def imports_of(path: Path) -> list[Import]:
    """Every modelyard module ``path`` imports, wherever the statement is."""
    return imports_in(_module_name(path), path.read_text(encoding="utf-8"), path)


def imports_in(importer: str, source: str, path: Path) -> list[Import]:
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package(importer, node.level)
                base = f"{package}.{base}" if base else package
            # ``from a.b import c``: the module a.b.c if there is one, else a.b.
            names = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        for name in names:
            if name == ROOT or name.startswith(ROOT + "."):
                found.append(Import(importer, name, path, node.lineno))
    return found


def all_imports() -> list[Import]:
    return [imp for path in sorted((SRC / ROOT).rglob("*.py")) for imp in imports_of(path)]


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violation(imp: Import) -> str | None:
    """The rule ``imp`` breaks, or None."""
    if imp.imported == ROOT:
        # The package itself (its version, its folder): it loads the SDK names lazily,
        # and importing any modelyard module has loaded it already.
        return None
    src, dst = _top(imp.importer), _top(imp.imported)
    if src == "" or src == dst:
        return None
    for name in (src, dst):
        if name not in LAYERS:
            return f"{ROOT}.{name} is in no layer: add it to this test's layers"
    if (src, dst) in FORBIDDEN:
        return f"{src} must not import {dst}: what both need belongs in compute"
    if LAYERS[dst] > LAYERS[src]:
        return f"a {NAMES[LAYERS[src]]} module imports the {NAMES[LAYERS[dst]]} layer above it"
    if LAYERS[src] == LAYERS[dst] == LAYERS["jobs"]:
        rest = imp.imported.split(".")[2:]
        if not rest or rest == ["schemas"] or imp.imported in PUBLIC_MODULES:
            return None
        if dst in LIBRARIES and not any(part.startswith("_") for part in rest):
            return None
        inner = ".".join(rest)
        return f"a domain reaches into {dst}'s {inner} (only schemas, the package, PUBLIC_MODULES)"
    return None


def test_imports_point_down_the_layers() -> None:
    broken = [(imp, why) for imp in all_imports() if (why := violation(imp)) is not None]
    unlisted = sorted(
        {f"{imp}: {why}" for imp, why in broken if (imp.importer, imp.imported) not in EXCEPTIONS}
    )
    assert not unlisted, "imports against the layers:\n" + "\n".join(unlisted)


def test_every_listed_exception_still_occurs() -> None:
    """A listed exception that is gone must leave the list, so the list only shrinks."""
    broken = {(imp.importer, imp.imported) for imp in all_imports() if violation(imp)}
    stale = sorted(set(EXCEPTIONS) - broken)
    assert not stale, f"exceptions that no longer occur (delete them): {stale}"


def test_every_exception_has_a_reason() -> None:
    assert all(reason.strip() for reason in EXCEPTIONS.values())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from modelyard.jobs.schemas import JobSpec\n", "imports the domain layer"),
        ("def f():\n    from modelyard.endpoints import service\n", "imports the domain layer"),
        ("if True:\n    import modelyard.runtime\n", "imports the runtime layer"),
        ("from ..jobs import contract\n", "imports the domain layer"),
    ],
)
def test_a_new_cross_layer_import_is_found(source: str, message: str) -> None:
    """The check itself: an import added to a compute module is reported."""
    probe = SRC / ROOT / "compute" / "warm.py"
    found = [violation(imp) for imp in imports_in("modelyard.compute.warm", source, probe)]
    assert found and all(why is not None and message in why for why in found), found


def test_domain_rules_are_found() -> None:
    here = SRC / ROOT / "jobs" / "service.py"

    def check(importer: str, imported: str) -> str | None:
        return violation(Import(importer, imported, here, 1))

    assert check("modelyard.jobs.service", "modelyard.endpoints.schemas") is not None
    assert check("modelyard.endpoints.controller", "modelyard.jobs.supervisor") is not None
    assert check("modelyard.registry.service", "modelyard.jobs.store") is not None
    assert check("modelyard.registry.service", "modelyard.flavors._content") is not None
    assert check("modelyard.registry.service", "modelyard.jobs.schemas") is None
    assert check("modelyard.transform.fastpath", "modelyard.serving.settings") is None
    assert check("modelyard.jobs.service", "modelyard.compute.archive") is None
    assert check("modelyard.compute.warm", "modelyard.core.paths") is None
