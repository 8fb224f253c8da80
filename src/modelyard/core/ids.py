"""Identifiers: sortable by creation time, unguessable, URL-safe."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``<prefix>-<10 chars of milliseconds><16 random chars>``; sorts by creation time."""
    return f"{prefix}-{_b32(time.time_ns() // 1_000_000, 10)}{_b32(secrets.randbits(80), 16)}"
