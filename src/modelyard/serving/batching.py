"""Adaptive micro-batching: concurrent requests share one ``predict`` call.

A request that is alone in its worker (no other request in progress) is predicted at
once on the event loop, with no thread hop. Otherwise requests queue their rows; one
consumer task takes the first waiting request and every
other one already queued (up to ``max_batch_size`` rows), waits at most ``max_wait_ms``
for more only when others were already waiting (so a lone request runs at once), stacks
the rows, runs the model once in the inference thread, and hands each request its own
slice. While the model runs, new requests queue up, so under load batches grow by
themselves. If a batch of several requests fails, each request is retried alone, so one
request that breaks the model fails alone and the others still get their answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from dataclasses import dataclass, field

import numpy as np

from modelyard.serving.errors import ModelFailed
from modelyard.serving.model import Array, PredictFn


@dataclass
class _Pending:
    rows: Array
    future: asyncio.Future[Array]


@dataclass
class BatchStats:
    """Counters for tests and metrics: calls made and rows answered."""

    calls: int = 0
    rows: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, rows: int) -> None:
        self.calls += 1
        self.rows += rows
        self.largest = max(self.largest, rows)
        if len(self.sizes) < 1000:
            self.sizes.append(rows)


class MicroBatcher:
    """Gathers rows for one predict function; belongs to the event loop it was created in."""

    def __init__(
        self,
        fn: PredictFn,
        executor: concurrent.futures.Executor,
        *,
        max_batch_size: int,
        max_wait_ms: float,
    ) -> None:
        self.fn = fn
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self.loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a batch is being gathered or run

    async def submit(self, rows: Array, *, alone: bool = False) -> Array:
        """The predictions for ``rows`` (2-D); raises what the model raised.

        ``alone`` says no other request is in progress in this worker: the rows are then
        predicted right here on the event loop, without the hop to the inference thread
        (the lowest latency for a lone request; nothing else is waiting to be served).
        """
        if alone and not self._busy and self._queue.empty() and len(rows) <= self.max_batch_size:
            return self._call(rows)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run())
        future: asyncio.Future[Array] = self.loop.create_future()
        self._queue.put_nowait(_Pending(rows, future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            self._busy = True
            batch = [first]
            count = len(first.rows)
            # Take what is already queued; wait for more only when there is company.
            carry: _Pending | None = None
            while count < self.max_batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                if count + len(item.rows) > self.max_batch_size:
                    carry = item
                    break
                batch.append(item)
                count += len(item.rows)
            if carry is None and len(batch) > 1 and self.max_wait > 0:
                deadline = loop.time() + self.max_wait
                while count < self.max_batch_size:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                    if count + len(item.rows) > self.max_batch_size:
                        carry = item
                        break
                    batch.append(item)
                    count += len(item.rows)
            try:
                await self._execute(batch, count)
                if carry is not None:
                    await self._execute([carry], len(carry.rows))
            finally:
                self._busy = False

    async def _execute(self, batch: list[_Pending], count: int) -> None:
        live = [p for p in batch if not p.future.done()]  # a caller may have gone away
        if not live:
            return
        loop = asyncio.get_running_loop()
        try:
            # inside the try: requests of different widths cannot be stacked, and then each
            # one runs alone like any batch that fails
            rows = live[0].rows if len(live) == 1 else np.concatenate([p.rows for p in live])
            result = await loop.run_in_executor(self.executor, self._call, rows)
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0].future, exc=exc)
                return
            for pending in live:  # find the culprit: each request alone
                try:
                    alone = await loop.run_in_executor(self.executor, self._call, pending.rows)
                except Exception as single_exc:
                    _settle(pending.future, exc=single_exc)
                else:
                    _settle(pending.future, result=alone)
            return
        offset = 0
        for pending in live:
            n = len(pending.rows)
            _settle(pending.future, result=result[offset : offset + n])
            offset += n

    def _call(self, rows: Array) -> Array:
        self.stats.record(len(rows))
        result = np.asarray(self.fn(rows))
        if result.ndim == 0 or len(result) != len(rows):
            # the model's fault, not the input's: a 500, not a refused input
            raise ModelFailed(
                f"the model returned {result.shape} for {len(rows)} rows; "
                "expected one prediction per row"
            )
        return result


def _settle(
    future: asyncio.Future[Array], *, result: Array | None = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)
