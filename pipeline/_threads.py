"""Every hop to a worker thread goes through ``run_sync``, which counts the calls under way.

The count is what lets a ``VirtualClock`` tell "every task waits for a timer" (time may
jump ahead) from "a task waits for a blocking call" (real work: time must not move while
it runs, however long a loaded machine takes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio.to_thread
from anyio import CapacityLimiter

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_under_way = 0


async def run_sync(
    fn: Callable[[*Ts], T],
    *args: *Ts,
    limiter: CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> T:
    """``anyio.to_thread.run_sync``, counted (an abandoned call counts until it is)."""
    global _under_way
    _under_way += 1
    try:
        return await anyio.to_thread.run_sync(
            fn, *args, limiter=limiter, abandon_on_cancel=abandon_on_cancel
        )
    finally:
        _under_way -= 1


def under_way() -> int:
    """Thread calls started and not yet returned (waiting for a thread included)."""
    return _under_way
