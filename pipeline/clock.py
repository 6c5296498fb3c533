"""Injectable time: the limiter, back-off and poll schedule read it instead of the OS.

``SystemClock`` is the real thing. ``VirtualClock`` is for tests: time stands still while
any task can run, and jumps straight to the next sleeper's deadline when every task is
blocked (trio's autojump clock, on anyio), so tests assert exact times without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel


class Clock(Protocol):
    """Monotonic seconds and a sleep that honours them."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The process's monotonic clock and anyio's sleep."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """A clock that only moves when every task is blocked (autojump).

    Use it inside ``async with clock.running():`` so a driver task advances time; sleeping
    on it outside that block would wait forever.
    """

    __slots__ = ("_counter", "_now", "_sleepers")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._counter), event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward by hand, waking every sleeper whose deadline passed."""
        self._now += seconds
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._sleepers)
            event.set()

    async def _drive(self) -> None:
        while True:
            await anyio.wait_all_tasks_blocked()
            if self._sleepers:
                self._now = max(self._now, self._sleepers[0][0])
                self._wake_due()
            else:
                await anyio.sleep(0.001)

    def running(self) -> _Driver:
        """Async context manager that jumps time forward while its body runs."""
        return _Driver(self)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.6f}, sleepers={len(self._sleepers)})"


class _Driver:
    __slots__ = ("_clock", "_tg")

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> VirtualClock:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._clock._drive)
        return self._clock

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc)  # type: ignore[arg-type]
