"""Server-side limits: requests per second (token bucket) and images per minute (window).

Both read the emulator's injected clock (monotonic seconds passed in as ``now``), so
tests step through them in virtual time.
"""

from __future__ import annotations

from collections import deque

IMAGE_WINDOW_S = 60.0


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked; one per request."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, tokens={self.tokens:.2f}/{self.capacity})"

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the limit."""
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ImageWindow:
    """At most ``limit`` images created in any rolling ``period`` (60 s).

    Design note: a rolling window rather than a bucket refilled each minute, because
    "images per minute" on a provider's tier page reads as "in any minute", and a
    rolling window is the stricter reading: a client that paces itself under it passes
    a per-minute bucket too. Entries are ``(time, images)`` of admitted submits, oldest
    first; ``used`` is their sum. Invariant: after ``admit``, the images of entries newer
    than ``now - period`` never exceed ``limit``, except for a single submit larger than
    the whole limit, admitted only into an empty window (else it would wait forever).
    """

    __slots__ = ("entries", "limit", "period", "used")

    def __init__(self, limit: int, period: float = IMAGE_WINDOW_S) -> None:
        self.limit = limit
        self.period = period
        self.entries: deque[tuple[float, int]] = deque()
        self.used = 0

    def __repr__(self) -> str:
        return f"ImageWindow(used={self.used}/{self.limit} per {self.period:g}s)"

    def _expire(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - self.period:
            self.used -= self.entries.popleft()[1]

    def admit(self, images: int, now: float) -> bool:
        """Count a submit of ``images`` if it fits; False means over the limit."""
        self._expire(now)
        if self.used + images > self.limit and self.used > 0:
            return False
        self.entries.append((now, images))
        self.used += images
        return True
