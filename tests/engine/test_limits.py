"""The rate limiter, in virtual time: exact spacing, pauses, adaptation."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clock import VirtualClock
from pipeline.engine._limits import RateLimiter

pytestmark = pytest.mark.anyio


async def _start_times(limiter: RateLimiter, clock: VirtualClock, callers: int) -> list[float]:
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(clock.now())

    async with clock.running(), anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(call)
    return starts


async def test_requests_are_evenly_spaced() -> None:
    """Ten concurrent callers at 5/s start exactly 0.2 s apart."""
    clock = VirtualClock()
    starts = await _start_times(RateLimiter(5, clock=clock), clock, 10)
    assert sorted(starts) == pytest.approx([i * 0.2 for i in range(10)])


async def test_burst_allows_an_initial_batch() -> None:
    """With burst 3, three callers start at once, then the spacing applies."""
    clock = VirtualClock()
    starts = sorted(await _start_times(RateLimiter(2, burst=3, clock=clock), clock, 5))
    assert starts == pytest.approx([0, 0, 0, 0.5, 1.0])


async def test_pause_holds_every_caller_and_slows_down() -> None:
    """A 429 pause of 3 s holds the whole lane, and the rate is halved after it."""
    clock = VirtualClock()
    limiter = RateLimiter(10, clock=clock, decrease=0.5)
    limiter.pause(3.0)
    starts = sorted(await _start_times(limiter, clock, 3))
    assert starts == pytest.approx([3.0, 3.2, 3.4])
    assert limiter.rate == pytest.approx(5.0)
    assert limiter.statistics().rate_limited == 1


async def test_rate_recovers_after_sustained_success() -> None:
    """After a 429, successes add back 10% of the configured rate per streak."""
    limiter = RateLimiter(10, clock=VirtualClock(), decrease=0.5, recover_after=5)
    limiter.pause(0)
    assert limiter.rate == pytest.approx(5.0)
    for _ in range(5):
        limiter.record_success()
    assert limiter.rate == pytest.approx(6.0)
    for _ in range(100):
        limiter.record_success()
    assert limiter.rate == pytest.approx(10.0)


def test_rejects_nonsense_settings() -> None:
    """A zero rate or zero burst is a programming error."""
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, burst=0)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=5),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=60),
)
def test_never_more_than_rate_per_window(rate: float, burst: int, gaps: list[float]) -> None:
    """In any window of w seconds at most floor(w*rate)+burst requests start."""
    clock = VirtualClock()
    limiter = RateLimiter(rate, burst=burst, clock=clock)
    starts = []
    for gap in gaps:
        clock.advance(gap)
        starts.append(limiter.reserve())
    starts.sort()
    window = 1.0
    j = 0
    for i, t in enumerate(starts):
        while starts[j] <= t - window:
            j += 1
        assert i - j + 1 <= int(window * rate + 1e-9) + burst
