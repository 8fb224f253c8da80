"""Idempotency keys: a client-chosen key that makes a retried write happen once.

An operation whose input model derives from :class:`Idempotent` accepts an
``idempotency_key``. The first call with a key runs the operation and stores its result
with the key, in the operation's own transaction (``core/idempotency_store.py``); a later
call by the same user with the same key and the same input, within :data:`WINDOW`,
returns that stored result and writes nothing, and one with a different input is refused
(409). So a client that lost a response (a crash, a cut connection, a 502 from a proxy)
can send the same request again without doubling anything. Only pydantic here: the
remote client imports the schemas that use it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from pydantic import BaseModel, Field

from modelyard.core.schema import Schema

# How long the server honours a key. A retry comes seconds or minutes later; a day covers
# a client that was down for a while.
WINDOW = dt.timedelta(hours=24)
KEY_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"


class Idempotent(Schema):
    """Mix-in for the input of an operation that honours idempotency keys."""

    idempotency_key: str | None = Field(
        None,
        pattern=KEY_PATTERN,
        description="A key the client generates per logical request (16-128 letters, digits, "
        "'_' or '-'); a retry with the same key and input returns the first result and "
        "writes nothing. The SDK sends one with every batch.",
    )


def new_key() -> str:
    """A fresh random key (what the SDK sends)."""
    return secrets.token_urlsafe(24)


def request_digest(req: BaseModel) -> str:
    """SHA-256 of the input without its key: what "the same request" means."""
    body = req.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()
