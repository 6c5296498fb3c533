"""The records and interfaces a lane is made of: its figures, its stop, its limiters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from pipeline.errors import ProviderError
from pipeline.providers.specs import Cost


class LocalSlots:
    """Alone, the lane's own limit is the provider's: nothing more to hold."""

    @asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class LaneStats:
    """A snapshot of one lane's live figures (progress displays, the ledger's counters)."""

    queued: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    images: int = 0
    usd: float = 0.0
    credits: float = 0.0
    requests: int = 0
    rate_limited: int = 0


@dataclass(slots=True)
class _Counters:
    queued: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    images: int = 0
    usd: float = 0.0
    credits: float = 0.0
    requests: int = 0
    rate_limited: int = 0


class LaneFigures:
    """A lane's live figures: jobs queued and in flight, their ends, what they cost."""

    _counters: _Counters

    def stats(self) -> LaneStats:
        """The lane's figures now."""
        c = self._counters
        return LaneStats(
            c.queued,
            c.in_flight,
            c.completed,
            c.failed,
            c.images,
            c.usd,
            c.credits,
            c.requests,
            c.rate_limited,
        )

    def enqueue(self, jobs: int) -> None:
        """``jobs`` more wait for this lane."""
        self._counters.queued += jobs

    @contextmanager
    def working(self) -> Iterator[None]:
        """One queued job is being worked on (from its submit to its terminal state)."""
        c = self._counters
        c.queued -= 1
        c.in_flight += 1
        try:
            yield
        finally:
            c.in_flight -= 1

    def record(self, *, completed: bool, images: int = 0, cost: Cost | None = None) -> None:
        """A job of this lane ended (``cost``: what its task cost, if it was paid)."""
        c = self._counters
        if completed:
            c.completed += 1
            c.images += images
        else:
            c.failed += 1
        if cost is not None:
            c.usd += cost.usd or 0.0
            c.credits += cost.credits or 0.0


class LaneStopped(Exception):
    """The lane stopped (``reason`` is the ProviderError that stopped it)."""

    def __init__(self, reason: ProviderError) -> None:
        self.reason = reason
        super().__init__(str(reason))


class Limiter(Protocol):
    """Spaces a lane's requests: ``RateLimiter`` alone, ``FleetLimiter`` in a fleet."""

    async def acquire(self, weight: int = 1) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def record_success(self) -> None: ...


class SharedSlots(Protocol):
    """Tasks in flight beyond this process: nothing alone, the fleet's count in a fleet."""

    def hold(self, job_id: str) -> AbstractAsyncContextManager[None]: ...
