"""attempt_then_retry: a bare first attempt, then stamina exactly as if it had run it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
import stamina.instrumentation

from pipeline.engine._retry import attempt_then_retry

pytestmark = pytest.mark.anyio


class Flaky(Exception):
    pass


class Broken(Exception):
    pass


@pytest.fixture
def retries() -> Iterator[list[stamina.instrumentation.RetryDetails]]:
    """The retries stamina reports (through its instrumentation hooks)."""
    seen: list[stamina.instrumentation.RetryDetails] = []
    before = stamina.instrumentation.get_on_retry_hooks()

    def hook(details: stamina.instrumentation.RetryDetails) -> None:
        seen.append(details)

    stamina.instrumentation.set_on_retry_hooks([hook])
    try:
        yield seen
    finally:
        stamina.instrumentation.set_on_retry_hooks(before)


Attempt = Callable[[], Awaitable[object]]


def _script(*outcomes: object) -> tuple[list[int], Attempt]:
    calls: list[int] = []

    async def attempt() -> object:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return calls, attempt


async def _run(attempt: Attempt, *, attempts: int = 3, timeouts: list[int] | None = None) -> object:
    def timeout() -> float | None:
        if timeouts is not None:
            timeouts.append(1)
        return 10.0

    return await attempt_then_retry(
        attempt,
        on=lambda exc: isinstance(exc, Flaky),
        attempts=attempts,
        time_left=timeout,
        wait_initial=0.01,
        wait_max=0.02,
        wait_jitter=0.0,
    )


async def test_a_first_success_builds_no_retrier(
    retries: list[stamina.instrumentation.RetryDetails],
) -> None:
    calls, attempt = _script("ok")
    timeouts: list[int] = []
    assert await _run(attempt, timeouts=timeouts) == "ok"
    assert (len(calls), retries, timeouts) == (1, [], [])


async def test_a_retryable_first_failure_is_retried_after_a_back_off(
    retries: list[stamina.instrumentation.RetryDetails],
) -> None:
    """The first failure reaches stamina as its attempt 1: one retry reported, with
    stamina's wait before attempt 2, and the timeout read when retries start."""
    calls, attempt = _script(Flaky("503"), "ok")
    timeouts: list[int] = []
    assert await _run(attempt, timeouts=timeouts) == "ok"
    assert len(calls) == 2
    assert [(r.retry_num, type(r.caused_by)) for r in retries] == [(1, Flaky)]
    assert retries[0].wait_for == pytest.approx(0.01)
    assert timeouts == [1]


async def test_a_final_error_is_raised_at_once(
    retries: list[stamina.instrumentation.RetryDetails],
) -> None:
    calls, attempt = _script(Broken("400"), "ok")
    with pytest.raises(Broken):
        await _run(attempt)
    assert (len(calls), retries) == (1, [])


async def test_attempts_count_the_first_one(
    retries: list[stamina.instrumentation.RetryDetails],
) -> None:
    """attempts=3: three tries in all (the bare one and two by stamina), then the last
    error; a final error during the retries ends them too."""
    calls, attempt = _script(Flaky("1"), Flaky("2"), Flaky("3"), "never")
    with pytest.raises(Flaky, match="3"):
        await _run(attempt)
    assert len(calls) == 3
    assert [r.retry_num for r in retries] == [1, 2]
    calls, attempt = _script(Flaky("1"), Broken("2"), "never")
    with pytest.raises(Broken):
        await _run(attempt)
    assert len(calls) == 2


async def test_one_attempt_means_no_retry() -> None:
    calls, attempt = _script(Flaky("1"), "never")
    with pytest.raises(Flaky):
        await _run(attempt, attempts=1)
    assert len(calls) == 1
