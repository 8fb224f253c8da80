"""The base of the domains' request and response types: a pydantic model built on first use.

A CLI command that lists runs through a server imports the tracking schemas (and those they
name), about a hundred models, but validates two or three of them. Pydantic builds a
model's validator and serializer when its class is defined (~1 ms each) unless the model
defers it; :class:`Schema` defers it to the model's first validation, serialisation or
schema (``defer_build``), so a command pays only for the models it uses. The models behave
the same otherwise; ``tests/core/test_schema.py`` builds every one of them, so a mistake in
a declaration still fails the tests rather than its first user.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A pydantic model whose validator and serializer are built on first use."""

    model_config = ConfigDict(defer_build=True)
