"""API tokens: ``myt_<token id>_<secret>``; only a SHA-256 of the secret is stored.

The secret has 256 bits of entropy, so a fast hash is enough (no password stretching);
comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "myt_"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def format_token(token_id: str, secret: str) -> str:
    return f"{PREFIX}{token_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """``(token_id, secret)``, or ``None`` when ``token`` is not shaped like one of ours."""
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not token_id or not secret:
        return None
    return token_id, secret


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
