"""Type aliases shared across the package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

JSON = dict[str, Any]
Chunks = Iterator[bytes]
Stream = BinaryIO
