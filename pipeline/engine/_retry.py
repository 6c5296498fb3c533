"""Retries with stamina, built only when a first attempt has failed.

``retry_context`` builds a tenacity retrier (with ``inspect`` calls) every time it is
entered: about 30 µs, paid by every submit and every download although nearly all of
them succeed at once. ``attempt_then_retry`` makes the first attempt bare; only if it
raises an error that ``on`` accepts does it enter stamina, whose first attempt re-raises
that error instead of sending again. So stamina sees the same sequence of attempts, waits
the same back-off before the second one, and calls the same instrumentation hooks as if
the first attempt had run inside it.

Each retry is logged to the run's log (``run.log``). stamina's own instrumentation is the
application's to configure (``stamina.instrumentation``): the library leaves it as it is;
the command line, which owns its process, routes it to the run log. The waits are
stamina's; tests turn them off with ``stamina.set_testing``. The time the retries may
take (``time_left``) is read from the run's clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

from pipeline._logs import get_logger

T = TypeVar("T")


async def attempt_then_retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    on: Callable[[Exception], bool | float],
    attempts: int,
    time_left: Callable[[], float | None],
    wait_initial: float,
    wait_max: float,
    wait_jitter: float = 1.0,
    what: str = "request",
) -> T:
    """Await ``attempt()`` up to ``attempts`` times while it raises what ``on`` accepts
    (stamina's exponential back-off with jitter between tries). ``time_left()`` is read
    when the retries start: the seconds they may take, or None. ``what`` names the
    operation in the log. Raises the last error."""
    try:
        return await attempt()
    except Exception as exc:
        if attempts <= 1 or not on(exc):
            raise
        first: Exception | None = exc
        last = exc

    def decide(exc: Exception) -> bool | float:
        nonlocal last
        last = exc
        return on(exc)

    async for retry in stamina.retry_context(
        on=decide,
        attempts=attempts,
        timeout=time_left(),
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_jitter,
    ):
        with retry:
            if first is not None:
                failed, first = first, None
                raise failed
            get_logger().info(
                "%s: attempt %d of %d after %s: %s",
                what,
                retry.num,
                attempts,
                type(last).__name__,
                last,
            )
            return await attempt()
    raise AssertionError("unreachable")  # pragma: no cover
