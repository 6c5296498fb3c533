"""Per-provider request-rate limiting.

Algorithm (GCRA, the "virtual scheduling" form of a leaky bucket)
-----------------------------------------------------------------
The limiter keeps one number, the *theoretical arrival time* ``tat``: the earliest moment
the next request may be sent if requests were perfectly spaced by ``interval = 1/rate``.
``acquire()`` *reserves* the slot ``start = max(now, tat - tolerance, paused_until)``,
moves ``tat`` to ``max(tat, now, paused_until) + interval`` and sleeps until ``start``.
Reservations are taken synchronously, so concurrent callers get distinct, ordered slots
with no polling loop and no lock.

Invariants
- In any window of length ``w`` at most ``floor(w * rate) + burst`` requests start.
- ``burst`` defaults to 1 (``tolerance = 0``): requests are evenly spaced, which a server
  counting requests in any sliding one-second window accepts.
- ``pause(seconds)`` (a 429 with Retry-After) holds *every* caller of the lane, not only
  the one that was refused.
- The rate adapts: each 429 multiplies it by ``decrease`` (never below ``min_rate``); every
  ``recover_after`` consecutive successes add ``increase * configured rate`` back, up to
  the configured rate, so the lane re-probes toward the limit it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of a limiter's live state."""

    rate: float
    configured_rate: float
    requests: int
    rate_limited: int
    paused_until: float


class RateLimiter:
    """Spaces requests to at most ``rate`` per second (see the module note)."""

    __slots__ = (
        "_burst",
        "_clock",
        "_configured",
        "_decrease",
        "_increase",
        "_interval",
        "_min_rate",
        "_paused_until",
        "_rate",
        "_rate_limited",
        "_recover_after",
        "_requests",
        "_streak",
        "_tat",
        "_tolerance",
    )

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Clock | None = None,
        decrease: float = 0.7,
        increase: float = 0.1,
        recover_after: int = 10,
        min_rate: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock = clock or SystemClock()
        self._burst = burst
        self._configured = rate
        self._rate = rate
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = float("-inf")
        self._paused_until = float("-inf")
        self._decrease = decrease
        self._increase = increase
        self._recover_after = recover_after
        self._min_rate = min_rate if min_rate is not None else rate / 16
        self._streak = 0
        self._requests = 0
        self._rate_limited = 0

    @property
    def rate(self) -> float:
        return self._rate

    def reserve(self, weight: int = 1) -> float:
        """Take the next ``weight`` slots and return the time the first starts (no
        waiting): a request that counts ``weight`` units (an image-per-minute limit counts
        a job's images)."""
        now = self._clock.now()
        base = max(self._tat, now, self._paused_until)
        start = max(now, self._tat - self._tolerance, self._paused_until)
        self._tat = base + self._interval * max(1, weight)
        self._requests += 1
        return start

    async def acquire(self, weight: int = 1) -> None:
        """Wait for this caller's slot (``weight`` units of the rate); counts one request."""
        start = self.reserve(weight)
        delay = start - self._clock.now()
        if delay > 0:
            await self._clock.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (and slow down: a 429 was seen)."""
        self._rate_limited += 1
        self._streak = 0
        until = self._clock.now() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)
        self._set_rate(max(self._min_rate, self._rate * self._decrease))

    def record_success(self) -> None:
        """Count an accepted request; after a streak, recover part of the lost rate."""
        if self._rate >= self._configured:
            return
        self._streak += 1
        if self._streak >= self._recover_after:
            self._streak = 0
            self._set_rate(min(self._configured, self._rate + self._increase * self._configured))

    def _set_rate(self, rate: float) -> None:
        self._rate = rate
        self._interval = 1.0 / rate
        self._tolerance = (self._burst - 1) * self._interval

    def statistics(self) -> LimiterStatistics:
        return LimiterStatistics(
            rate=self._rate,
            configured_rate=self._configured,
            requests=self._requests,
            rate_limited=self._rate_limited,
            paused_until=self._paused_until,
        )

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self._rate:g}/s of {self._configured:g}/s, "
            f"requests={self._requests}, rate_limited={self._rate_limited})"
        )
