"""Data capture: sampled requests and answers written as JSON lines into the artifact store.

The router decides per request (``random() * 100 < percent``) and, when sampled, puts
one event on a bounded in-memory queue without waiting: a full queue drops the event and
counts it (``dropped``), so capture never slows an answer beyond the sampling decision.
A writer thread groups events by endpoint and writes a file when an endpoint has
``max_batch`` events or its oldest event is ``flush_seconds`` old, then records the file
(digest, event count, time range) in ``endpoint_capture_files`` for monitoring to list.

One event (one line)::

    {"event_id": "...", "time": "2026-01-01T00:00:00.000000+00:00", "endpoint": "churn",
     "variant": "primary", "model": "churn", "model_version": 3, "shadow": false,
     "latency_ms": 4.1,
     "request": {"content_type": "text/csv", "encoding": "text", "data": "1,2,3"},
     "response": {"status": 200, "content_type": "application/json",
                  "encoding": "text", "data": "{...}"}}

Bodies that are not UTF-8 are base64 (``"encoding": "base64"``); bodies over
:data:`MAX_BODY_BYTES` are left out (``"encoding": "omitted"``, ``"size"`` kept).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.core.artifacts import ArtifactStore
from modelyard.core.db import Database
from modelyard.core.ids import new_id
from modelyard.endpoints.store import CaptureFileRow

log = logging.getLogger("modelyard.endpoints")

QUEUE_EVENTS = 10_000
QUEUE_BYTES = 64 << 20
MAX_BODY_BYTES = 1 << 20


def body_record(content_type: str, body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        return {"content_type": content_type, "encoding": "omitted", "size": len(body)}
    try:
        return {"content_type": content_type, "encoding": "text", "data": body.decode("utf-8")}
    except UnicodeDecodeError:
        data = base64.b64encode(body).decode("ascii")
        return {"content_type": content_type, "encoding": "base64", "data": data}


@dataclass(frozen=True)
class RawBody:
    """A body as the router saw it; encoded by the writer thread, not on the request path."""

    content_type: str
    body: bytes
    status: int | None = None
    size: int | None = None  # set instead of ``body`` for a body over MAX_BODY_BYTES

    @classmethod
    def of(cls, content_type: str, body: bytes, status: int | None = None) -> RawBody:
        """Keep a large body's size only, so a queued event stays small."""
        if len(body) > MAX_BODY_BYTES:
            return cls(content_type, b"", status, len(body))
        return cls(content_type, body, status)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.status is None else {"status": self.status}
        if self.size is not None:
            out.update(content_type=self.content_type, encoding="omitted", size=self.size)
        else:
            out.update(body_record(self.content_type, self.body))
        return out


@dataclass
class _Batch:
    events: list[bytes] = field(default_factory=list)
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    opened: float = 0.0
    max_batch: int = 1000
    flush_s: float = 5.0


class Capturer:
    """The bounded queue and its writer thread (one per control-plane process)."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        *,
        capacity: int = QUEUE_EVENTS,
        max_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        # An event, a flush request (set once everything before it is written), or None
        # (stop). Only events count against the capacity: requests use put() and wait.
        self._queue: queue.Queue[tuple[str, dict[str, Any], int, float] | threading.Event | None]
        self._queue = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.written = 0
        self.max_bytes = max_bytes
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}

    def put(
        self, endpoint: str, event: dict[str, Any], *, max_batch: int, flush_seconds: float
    ) -> None:
        """Queue an event; never blocks (a full queue drops it and counts the drop).

        The queue holds at most ``capacity`` events and ``max_bytes`` of bodies.
        """
        self._ensure_thread()
        size = sum(len(v.body) for v in event.values() if isinstance(v, RawBody))
        with self._bytes_lock:
            if self._queued_bytes + size > self.max_bytes:
                self.dropped += 1
                return
            self._queued_bytes += size
        try:
            self._queue.put_nowait((endpoint, event, max_batch, flush_seconds))
        except queue.Full:
            with self._bytes_lock:
                self._queued_bytes -= size
                self.dropped += 1

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="modelyard-capture", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        """Write every event queued so far now (tests, shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def close(self) -> None:
        if self._thread is None:
            return
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._thread = None

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._write_due(force=False)
                continue
            if item is None:
                self._write_due(force=True)
                return
            if isinstance(item, threading.Event):
                self._write_due(force=True)
                item.set()
                continue
            endpoint, event, max_batch, flush_s = item
            self._add(endpoint, event, max_batch, flush_s)
            self._write_due(force=False)

    def _add(self, endpoint: str, event: dict[str, Any], max_batch: int, flush_s: float) -> None:
        batch = self._batches.get(endpoint)
        if batch is None:
            batch = _Batch(opened=time.monotonic(), max_batch=max_batch, flush_s=flush_s)
            self._batches[endpoint] = batch
        when = dt.datetime.fromisoformat(event["time"])
        batch.first = when if batch.first is None else min(batch.first, when)
        batch.last = when if batch.last is None else max(batch.last, when)
        size = sum(len(v.body) for v in event.values() if isinstance(v, RawBody))
        with self._bytes_lock:
            self._queued_bytes -= size
        encoded = {k: v.record() if isinstance(v, RawBody) else v for k, v in event.items()}
        batch.events.append(orjson.dumps(encoded))

    def _write_due(self, *, force: bool) -> None:
        now = time.monotonic()
        for endpoint, batch in list(self._batches.items()):
            full = len(batch.events) >= batch.max_batch
            old = now - batch.opened >= batch.flush_s
            if force or full or old:
                del self._batches[endpoint]
                try:
                    self._write(endpoint, batch)
                except Exception:
                    log.exception("writing %d capture events of %s", len(batch.events), endpoint)

    def _write(self, endpoint: str, batch: _Batch) -> None:
        if not batch.events or batch.first is None or batch.last is None:
            return
        data = b"\n".join(batch.events) + b"\n"
        info = self.artifacts.put_bytes(data)
        with self.db.transaction() as session:
            session.add(
                CaptureFileRow(
                    id=new_id("cap"),
                    endpoint=endpoint,
                    digest=info.digest,
                    size=info.size,
                    count=len(batch.events),
                    first_time=batch.first,
                    last_time=batch.last,
                )
            )
        self.written += len(batch.events)
