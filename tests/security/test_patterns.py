"""Every validation pattern is anchored at both ends, around the whole alternation.

pydantic matches ``pattern=`` by *search*, so ``^$|[a-z]+$`` accepts ``../../etc/x`` (the
second alternative needs only a matching end). This walks every pydantic model of every
module of modelyard (field types nested in lists, dicts and unions included, through each
model's core schema) and every module-level compiled regex, and asserts that each pattern
can only match a whole value.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

import modelyard

# Modules that import optional packages this environment may not have; their patterns are
# still checked whenever they import.
_OPTIONAL = ("ray",)

# Module-level compiled regexes that scan text for a fragment (a tokenizer's ``match`` at a
# position, ``sub``, ``findall``) rather than validate a whole value, with the reason.
_SCANNERS = {
    "modelyard.core.paths._DANGEROUS_ESCAPE": "finds a dangerous %-escape anywhere in a path",
    "modelyard.core.paths._DRIVE": "tests whether a path starts with a drive letter",
    "modelyard.core.operations._PATH_PARAM": "finds the {name} parameters in a route",
    "modelyard.client.transforms._PROGRESS": "reads the count from a progress log line",
    "modelyard.server.headers._UNSAFE_FILENAME": "replaces each unsafe character of a name",
    "modelyard.mlflow_compat.registry._NOT_PROMPT": "removes one clause from a filter",
    "modelyard.mlflow_compat.search._WORD": "a token of the filter tokenizer",
    "modelyard.mlflow_compat.search._BARE_KEY": "a token of the filter tokenizer",
    "modelyard.mlflow_compat.search._NUMBER": "a token of the filter tokenizer",
    "modelyard.tracking.query._WORD": "a token of the filter tokenizer",
    "modelyard.tracking.query._KEY": "a token of the filter tokenizer",
    "modelyard.tracking.query._NUMBER": "a token of the filter tokenizer",
}
SOURCES = {
    str(path): path.read_text(encoding="utf-8")
    for path in Path(modelyard.__file__).parent.rglob("*.py")
}


def _modules() -> list[ModuleType]:
    found: list[ModuleType] = [modelyard]
    for info in pkgutil.walk_packages(modelyard.__path__, "modelyard."):
        # __main__ runs a program; migrations are alembic scripts run by alembic only.
        if info.name.endswith("__main__") or info.name.startswith("modelyard.migrations"):
            continue
        try:
            found.append(importlib.import_module(info.name))
        except ImportError as exc:
            if exc.name is None or exc.name.split(".")[0] not in _OPTIONAL:
                raise
    return found


MODULES = _modules()


def _models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for module in MODULES:
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, BaseModel)
                and value.__module__.startswith("modelyard")
                and not inspect.isabstract(value)
            ):
                seen[f"{value.__module__}.{value.__qualname__}"] = value
    return [seen[k] for k in sorted(seen)]


def _patterns_in(schema: Any, where: str) -> Iterator[tuple[str, str]]:
    """(pattern, where) for every ``pattern`` constraint in a pydantic-core schema."""
    if isinstance(schema, dict):
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            yield pattern, where
        elif isinstance(pattern, re.Pattern):
            yield pattern.pattern, where
        for key, value in schema.items():
            if key == "pattern":
                continue
            name = value.get("ref", key) if isinstance(value, dict) else key
            yield from _patterns_in(value, f"{where}.{name}" if key == "fields" else where)
    elif isinstance(schema, (list, tuple)):
        for item in schema:
            yield from _patterns_in(item, where)


def _field_patterns() -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    for model in _models():
        name = f"{model.__module__}.{model.__qualname__}"
        # The domains' models are built on first use (core.schema.Schema, defer_build):
        # build each one here, or its core schema is a placeholder with no patterns.
        model.model_rebuild(force=True)
        for pattern, _ in _patterns_in(model.__pydantic_core_schema__, name):
            found[(pattern, name)] = None
    return list(found)


def _compiled_patterns() -> list[tuple[str, str, str]]:
    """(pattern, where, module file) of every module-level compiled regex not a scanner."""
    found: dict[tuple[str, str, str], None] = {}
    for module in MODULES:
        for attr, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                where = f"{module.__name__}.{attr}"
                if where not in _SCANNERS and attr.split(".")[-1] == attr:
                    found[(value.pattern, where, str(module.__file__))] = None
    return list(found)


def _methods_used(name: str, module_file: str) -> set[str]:
    """How the regex ``name`` is called (``fullmatch``, ``match``...) in its module, or,
    for a public name, anywhere in modelyard."""
    files = [module_file] if name.startswith("_") else list(SOURCES)
    call = re.compile(r"(?<![\w.])" + re.escape(name) + r"\.([a-z_]+)\(")
    return {m for f in files for m in call.findall(SOURCES.get(f, ""))}


def unanchored(pattern: str) -> str | None:
    """Why ``pattern`` can match less than a whole value, or None when it cannot.

    Anchored means: it starts with ``^`` (or ``\\A``), ends with an unescaped ``$`` (or
    ``\\Z``/``\\z``), and has no ``|`` outside a group or a character class (``^a|b$`` is
    ``(^a)|(b$)``).
    """
    if not (pattern.startswith("^") or pattern.startswith(r"\A")):
        return "does not start with ^"
    depth, in_class, i, last = 0, False, 0, ""
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            last = pattern[i : i + 2]
            i += 2
            continue
        if in_class:
            in_class = ch != "]" or pattern[i - 1] == "["
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^" or pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return "has a | outside a group: the anchors bind to one alternative only"
        last = ch
        i += 1
    if last not in ("$", r"\Z", r"\z"):
        return "does not end with $"
    return None


def test_the_checker_catches_what_it_should() -> None:
    assert unanchored(r"^[a-z]+$") is None
    assert unanchored(r"^(?:|[a-z]+)$") is None
    assert unanchored(r"^([1-9][0-9]*|[a-z]+)$") is None
    assert unanchored(r"^[|$]x$") is None
    assert unanchored(r"^$|[a-z]+$") is not None  # the defect of issue 13 item 1
    assert unanchored(r"^a|b$") is not None
    assert unanchored(r"[a-z]+$") is not None
    assert unanchored(r"^[a-z]+") is not None
    assert unanchored(r"^[a-z]+\$") is not None


def test_the_walk_finds_patterns_everywhere() -> None:
    """The walk reaches nested types (dict keys of registry tags) and many schemas: it
    cannot pass by finding nothing."""
    where = {w for _, w in _field_patterns()}
    assert "modelyard.registry.schemas.RegisterVersion" in where
    assert "modelyard.registry.schemas.CreateModel" in where  # tags: dict[TagKey, ...]
    assert "modelyard.tracking.schemas.StartRun" in where
    assert len(where) > 80  # 92 models with patterns on 2026-12-08


@pytest.mark.parametrize(("pattern", "where"), _field_patterns())
def test_every_field_pattern_is_anchored(pattern: str, where: str) -> None:
    problem = unanchored(pattern)
    assert problem is None, f"{where}: pattern {pattern!r} {problem}"


@pytest.mark.parametrize(("pattern", "where", "module_file"), _compiled_patterns())
def test_every_compiled_regex_matches_whole_values(
    pattern: str, where: str, module_file: str
) -> None:
    """Used only with ``fullmatch``, or anchored with ``\\Z``: with Python's ``re``,
    ``$`` also matches before a trailing newline, so ``match`` with ``^...$`` lets
    ``"name\\n"`` through."""
    used = _methods_used(where.rsplit(".", 1)[1], module_file)
    if used and used <= {"fullmatch"}:
        return
    problem = unanchored(pattern)
    if problem is None and not pattern.endswith(("\\Z", "\\z")):
        problem = "ends with $, which lets a trailing newline through"
    assert problem is None, (
        f"{where}: {pattern!r} {problem}; it is used with {sorted(used) or 'nothing found'} "
        "(use fullmatch; a regex that scans for a fragment belongs in _SCANNERS with the reason)"
    )
