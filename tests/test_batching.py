"""Batcher: concurrent blocking calls share thread hops, in order, each with its own
outcome, and a cancelled caller still waits for its call."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import pytest

from pipeline._batching import Batcher, Call, run_each_in_thread

pytestmark = pytest.mark.anyio


class Recorder:
    """An ``execute`` that runs batches in a worker thread and remembers them."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def __call__(self, batch: list[Call]) -> None:
        self.sizes.append(len(batch))
        await run_each_in_thread(batch)


def _call(order: list[int], k: int) -> Callable[[], int]:
    def fn(k: int = k) -> int:
        order.append(k)
        if k % 7 == 3:
            raise ValueError(f"call {k} fails")
        return k * 10

    return fn


async def test_concurrent_calls_share_hops_in_order_with_their_own_outcomes() -> None:
    record = Recorder()
    batcher = Batcher(record)
    order: list[int] = []
    results: dict[int, object] = {}

    async def caller(k: int) -> None:
        try:
            results[k] = await batcher.call(_call(order, k))
        except ValueError as exc:
            results[k] = exc

    async with anyio.create_task_group() as tg:
        for k in range(50):
            tg.start_soon(caller, k)
    assert order == list(range(50))  # run in the order they were queued
    assert sum(record.sizes) == 50
    assert len(record.sizes) < 10  # grouped: a few hops, not 50
    for k in range(50):
        if k % 7 == 3:
            assert isinstance(results[k], ValueError)
            assert str(results[k]) == f"call {k} fails"
        else:
            assert results[k] == k * 10


async def test_a_cancelled_caller_returns_only_after_its_call_ran() -> None:
    """B queues behind A's running batch and is cancelled: it still waits for A's batch
    and then its own call, which runs, before it returns."""
    gate = threading.Event()
    ran: list[str] = []
    batcher = Batcher()

    def slow() -> None:
        gate.wait(5)
        ran.append("A ran")

    def fast() -> None:
        ran.append("B ran")

    scopes: list[anyio.CancelScope] = []

    async def caller(name: str, fn: Callable[[], None]) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await batcher.call(fn)
            ran.append(f"{name} returned")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "A", slow)
            await anyio.sleep(0.02)  # A's batch is running in a worker thread
            tg.start_soon(caller, "B", fast)
            await anyio.sleep(0.02)
            scopes[1].cancel()
            await anyio.sleep(0.05)
            assert ran == []  # B was cancelled, but nothing has run yet: it waits
            gate.set()
    assert ran == ["A ran", "A returned", "B ran", "B returned"]


async def test_a_failing_executor_fails_the_calls_it_did_not_run() -> None:
    async def broken(batch: list[Call]) -> None:
        batch[0].result, batch[0].done = "first", True
        raise RuntimeError("worker died")

    batcher = Batcher(broken)
    outcomes: list[object] = []

    async def caller(k: int) -> None:
        try:
            outcomes.append(await batcher.call(lambda: k))
        except RuntimeError as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, 1)
        tg.start_soon(caller, 2)
    assert outcomes == ["first", "worker died"]
