"""Injectable time: every sleep and every deadline of a run goes through a ``Clock``.

``SystemClock`` is the real thing. ``VirtualClock`` is for tests: time stands still while
any task can run, and jumps straight to the next sleeper's wake-up or deadline when every
task is blocked (trio's autojump clock, on anyio), so tests assert exact times and a run
that would wait minutes takes milliseconds.

Deadlines are cancel scopes: ``with clock.move_on_at(t):`` cancels its block when the
clock reaches ``t`` (``scope.cancelled_caught`` tells), like ``anyio.move_on_after``.

Wall-clock timestamps for records (``utcnow``) are not the clock's business: they say
when something happened, not how long to wait.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from pipeline import _threads


def utcnow() -> str:
    """Now as the ledger writes it: ``2026-01-01T12:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock(Protocol):
    """Monotonic seconds, a sleep and deadlines that honour them, and the wall time that
    goes with them (epoch seconds: to compare with a provider's timestamps)."""

    def now(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def move_on_at(self, deadline: float) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope that cancels its block once ``now()`` reaches ``deadline``
        (``with clock.move_on_at(t) as scope: ...``)."""
        ...


class SystemClock:
    """The process's monotonic clock and anyio's sleep."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def move_on_at(self, deadline: float) -> anyio.CancelScope:
        # anyio's deadlines are on its own clock (the event loop's); carry the distance.
        return anyio.CancelScope(deadline=anyio.current_time() + (deadline - time.monotonic()))

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """A clock that only moves when every task is blocked (autojump).

    Use it inside ``async with clock.running():`` so a driver task advances time; sleeping
    on it outside that block would wait forever.

    A blocking call in a worker thread is work under way, not idleness
    (``pipeline._threads`` counts them): time never moves while one runs. A socket may
    still be about to answer, so before each jump the driver lets ``settle_s`` of real
    time pass and jumps only if no task touched the clock meanwhile: with a real server
    on loopback in the same test, replies arrive before time moves on; before a jump that
    fires a deadline (which cancels work), it waits ten times as long. (The driver reads
    asyncio's task states, as ``anyio.wait_all_tasks_blocked`` does, without its 0.1 s
    polling.)
    """

    __slots__ = (
        "_activity",
        "_counter",
        "_deadlines",
        "_now",
        "_sleepers",
        "_start",
        "_wall",
        "settle_s",
    )

    def __init__(self, start: float = 0.0, *, settle_s: float = 0.002) -> None:
        self._now = self._start = start
        self._wall = time.time()  # wall time moves with the virtual time from here
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._deadlines: list[_VirtualDeadline] = []
        self._counter = itertools.count()
        self._activity = 0
        self.settle_s = settle_s

    def now(self) -> float:
        self._activity += 1
        return self._now

    def wall(self) -> float:
        return self._wall + (self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        self._activity += 1
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._counter), event))
        await event.wait()

    def move_on_at(self, deadline: float) -> _VirtualDeadline:
        self._activity += 1
        entry = _VirtualDeadline(deadline, next(self._counter))
        if deadline <= self._now:
            entry.scope.cancel()
        else:
            heapq.heappush(self._deadlines, entry)
        return entry

    def advance(self, seconds: float) -> None:
        """Move time forward by hand, waking every sleeper whose time came."""
        self._now += seconds
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()
        while self._deadlines and self._deadlines[0].at <= self._now:
            heapq.heappop(self._deadlines).scope.cancel()

    def _next_event(self) -> float | None:
        # Scopes whose block has ended need no deadline any more.
        while self._deadlines and self._deadlines[0].done:
            heapq.heappop(self._deadlines)
        times = [self._sleepers[0][0]] if self._sleepers else []
        if self._deadlines:
            times.append(self._deadlines[0].at)
        return min(times) if times else None

    async def _drive(self) -> None:
        while True:
            while not _others_blocked():
                if _threads.under_way():
                    # A blocking call runs in a thread: wait for it without spinning
                    # (a spinning loop would hold the GIL the thread needs).
                    await anyio.sleep(_THREAD_POLL_S)
                else:
                    await anyio.lowlevel.checkpoint()
            seen = self._activity
            await anyio.sleep(self.settle_s)  # real time: let sockets and threads answer
            if self._activity != seen or not _others_blocked():
                continue  # something ran: not idle yet
            wake = self._next_event()
            if wake is None:
                continue
            if self._deadline_first(wake):
                # A deadline ends work (cancels it) where a sleeper only wakes: before
                # one fires, give sockets ten times longer to answer (a loaded machine
                # can take more than ``settle_s`` to carry a request over loopback).
                await anyio.sleep(self.settle_s * DEADLINE_SETTLE)
                if self._activity != seen or not _others_blocked():
                    continue
            self._now = max(self._now, wake)
            self._wake_due()

    def _deadline_first(self, wake: float) -> bool:
        """Whether the jump to ``wake`` fires a deadline before any sleeper wakes."""
        if not self._deadlines or self._deadlines[0].at > wake:
            return False
        return not self._sleepers or self._sleepers[0][0] > self._deadlines[0].at

    def running(self) -> _Driver:
        """Async context manager that jumps time forward while its body runs."""
        return _Driver(self)

    def __repr__(self) -> str:
        return (
            f"VirtualClock(now={self._now:.6f}, sleepers={len(self._sleepers)}, "
            f"deadlines={len(self._deadlines)})"
        )


_THREAD_POLL_S = 0.0005
DEADLINE_SETTLE = 10  # x settle_s of quiet before a deadline fires


def _others_blocked() -> bool:
    """Whether every task but this one waits for a timer or an event: none is ready to
    run (asyncio's task states) and no blocking call is under way in a thread."""
    if _threads.under_way():
        return False
    this = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not this:
            waiter = task._fut_waiter  # type: ignore[attr-defined]
            if waiter is None or waiter.done():
                return False
    return True


class _VirtualDeadline:
    """A deadline of a ``VirtualClock``: the cancel scope, and whether its block ended."""

    __slots__ = ("at", "done", "order", "scope")

    def __init__(self, at: float, order: int) -> None:
        self.at = at
        self.order = order
        self.scope = anyio.CancelScope()
        self.done = False

    def __lt__(self, other: _VirtualDeadline) -> bool:
        return (self.at, self.order) < (other.at, other.order)

    def __enter__(self) -> anyio.CancelScope:
        return self.scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.done = True
        return bool(self.scope.__exit__(exc_type, exc, tb))


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
