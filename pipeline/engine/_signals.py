"""Signals: the first SIGINT/SIGTERM stops a run with its state committed."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


@asynccontextmanager
async def signals_cancel(scope: anyio.CancelScope, interrupted: list[int]) -> AsyncIterator[None]:
    """First SIGINT/SIGTERM cancels the run (state is committed); a second exits at once."""

    async def watch() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if interrupted:
                    os._exit(130)
                interrupted.append(signum)
                scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
