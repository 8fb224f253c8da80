"""Micro-batching: concurrent single-row requests share predict calls; answers stay matched."""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx
import numpy as np
import pytest
from servekit import LinearModel, app_for, call

from modelyard.serving.batching import MicroBatcher
from modelyard.serving.errors import ModelFailed

WEIGHTS = [1.0, 10.0, 100.0]


def test_concurrent_rows_are_batched_and_each_gets_its_own_answer() -> None:
    # a slow model lets requests pile up while one batch runs
    model = LinearModel(WEIGHTS, delay=0.02)
    app = app_for(model, max_batch_size=16, max_wait_ms=5)

    async def burst(client: httpx.AsyncClient) -> list[tuple[int, httpx.Response]]:
        async def one(i: int) -> tuple[int, httpx.Response]:
            return i, await client.post("/invocations", json=[[i, 0, 0]])

        return await asyncio.gather(*(one(i) for i in range(64)))

    results = call(app, burst)
    for i, response in results:
        assert response.status_code == 200
        assert response.json() == {"predictions": [float(i)]}
    assert sum(model.calls) == 64
    assert max(model.calls) > 1, model.calls
    assert max(model.calls) <= 16
    assert len(model.calls) < 64


def test_a_lone_request_runs_without_company() -> None:
    model = LinearModel(WEIGHTS)
    app = app_for(model, max_batch_size=32, max_wait_ms=10_000)

    async def sequential(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.post("/invocations", json=[[i, 0, 0]]) for i in range(3)]

    responses = call(app, sequential)
    assert [r.json()["predictions"] for r in responses] == [[0.0], [1.0], [2.0]]
    assert model.calls == [1, 1, 1]  # never waited 10 s for a partner


def test_one_poisoned_request_fails_alone_in_a_batch() -> None:
    model = LinearModel(WEIGHTS, delay=0.02)
    app = app_for(model, max_batch_size=32, max_wait_ms=5)

    async def burst(client: httpx.AsyncClient) -> list[httpx.Response]:
        rows = [[-999, 0, 0] if i == 5 else [i, 0, 0] for i in range(24)]
        return await asyncio.gather(*(client.post("/invocations", json=[row]) for row in rows))

    responses = call(app, burst)
    for i, response in enumerate(responses):
        if i == 5:
            assert response.status_code == 500
            assert "poisoned row" in response.json()["error"]
        else:
            assert response.json() == {"predictions": [float(i)]}, i


def test_multi_row_requests_are_split_back_in_order() -> None:
    calls: list[int] = []

    def fn(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x.sum(axis=1)

    async def main() -> list[np.ndarray]:
        executor = concurrent.futures.ThreadPoolExecutor(1)
        batcher = MicroBatcher(fn, executor, max_batch_size=8, max_wait_ms=2)
        blocks = [np.full((n, 2), float(n)) for n in (1, 3, 2, 5, 1, 9)]
        try:
            return await asyncio.gather(*(batcher.submit(b) for b in blocks))
        finally:
            await batcher.close()
            executor.shutdown()

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [
        [2.0],
        [6.0] * 3,
        [4.0] * 2,
        [10.0] * 5,
        [2.0],
        [18.0] * 9,
    ]
    assert sum(calls) == 21
    # the 9-row request, over the batch size, runs alone; every other call stays within 8
    assert 9 in calls
    assert all(size <= 8 for size in calls if size != 9)


def test_a_model_returning_the_wrong_length_is_an_error() -> None:
    async def main() -> None:
        executor = concurrent.futures.ThreadPoolExecutor(1)
        batcher = MicroBatcher(lambda x: x[:1, 0], executor, max_batch_size=8, max_wait_ms=0)
        try:
            await batcher.submit(np.zeros((3, 2)))
        finally:
            await batcher.close()
            executor.shutdown()

    # the model's failure (a 500), not a refusal of the input
    with pytest.raises(ModelFailed, match="for 3 rows"):
        asyncio.run(main())


def test_batching_over_real_connections() -> None:
    import threading
    import time

    import uvicorn

    from testkit import free_port

    model = LinearModel(WEIGHTS, delay=0.01)
    app = app_for(model, max_batch_size=32, max_wait_ms=2)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as c:
            return await asyncio.gather(
                *(c.post("/invocations", json=[[i, 0, 0]]) for i in range(96))
            )

    try:
        responses = asyncio.run(burst())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert [r.json()["predictions"] for r in responses] == [[float(i)] for i in range(96)]
    assert sum(model.calls) == 96
    assert max(model.calls) > 1, model.calls
