"""How many refused-authentication audit events one source may leave per minute.

A request without a token, or with a bad one, is audited (``result: unauthenticated``),
but a client hammering the server must not turn the audit log into its own flood: each
source (client address) gets at most :data:`PER_MINUTE` events per minute. The refusals
beyond that are counted, and the next event written for that source carries the count
(``detail.suppressed``), so the log still says how many there were.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

PER_MINUTE = 20
WINDOW_S = 60.0
# Sources remembered at once; past it, those whose window has ended are forgotten first.
MAX_SOURCES = 10_000


@dataclass
class _Window:
    started: float
    written: int = 0
    suppressed: int = 0


class RefusalLimiter:
    """Thread-safe; one per runtime. ``clock`` is injectable for tests."""

    def __init__(
        self,
        per_minute: int = PER_MINUTE,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, source: str) -> int | None:
        """``None`` if this refusal is not to be written; otherwise the number of refusals
        from ``source`` left unwritten before it (to record with it), now reset to 0."""
        now = self.clock()
        with self._lock:
            window = self._windows.get(source)
            if window is None or now - window.started >= self.window_s:
                carried = window.suppressed if window is not None else 0
                if window is None and len(self._windows) >= MAX_SOURCES:
                    self._forget(now)
                window = self._windows[source] = _Window(started=now, suppressed=carried)
            if window.written >= self.per_minute:
                window.suppressed += 1
                return None
            window.written += 1
            carried, window.suppressed = window.suppressed, 0
            return carried

    def _forget(self, now: float) -> None:
        ended = [s for s, w in self._windows.items() if now - w.started >= self.window_s]
        for source in ended or list(self._windows)[: MAX_SOURCES // 10]:
            del self._windows[source]
