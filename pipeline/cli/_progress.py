"""Live progress on stderr: a rich table on a terminal, a heartbeat line otherwise."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TextIO

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.engine._lane import Lane

HEARTBEAT_S = 5.0
REFRESH_S = 0.5


class Progress:
    """Samples lane counters; never touches the hot path."""

    def __init__(self, lanes: Mapping[str, Lane], stream: TextIO, *, quiet: bool = False):
        self.lanes = lanes
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self._t0 = time.monotonic()
        self._last: dict[str, tuple[float, int]] = {}

    def _rate(self, name: str, lane: Lane) -> float:
        now = time.monotonic()
        t, n = self._last.get(name, (self._t0, 0))
        self._last[name] = (now, lane.counters.requests)
        return (lane.counters.requests - n) / (now - t) if now > t else 0.0

    def _eta(self, lane: Lane) -> str:
        c = lane.counters
        done = c.completed + c.failed
        left = c.queued + c.in_flight
        elapsed = time.monotonic() - self._t0
        if not done or not left:
            return "-"
        return f"{left * elapsed / done:.0f}s"

    def table(self) -> Table:
        t = Table(title="pipeline", expand=False)
        for col in (
            "provider",
            "queued",
            "in flight",
            "done",
            "failed",
            "images",
            "spent",
            "req/s",
            "ETA",
        ):
            t.add_column(col, justify="left" if col == "provider" else "right")
        for name, lane in self.lanes.items():
            c = lane.counters
            t.add_row(
                name,
                str(c.queued),
                str(c.in_flight),
                str(c.completed),
                str(c.failed),
                str(c.images),
                _money(c.usd, c.credits),
                f"{self._rate(name, lane):.1f}",
                self._eta(lane),
            )
        return t

    def line(self) -> str:
        parts = []
        for name, lane in self.lanes.items():
            c = lane.counters
            parts.append(
                f"{name}: {c.completed} done, {c.failed} failed, {c.in_flight} in flight, "
                f"{c.queued} queued, {_money(c.usd, c.credits)}, "
                f"{self._rate(name, lane):.1f} req/s, ETA {self._eta(lane)}"
            )
        return "pipeline: " + " | ".join(parts)

    async def run(self) -> None:
        """Show progress until cancelled."""
        if self.quiet:
            await anyio.sleep_forever()
        if self.tty:
            console = Console(file=self.stream)
            with Live(self.table(), console=console, refresh_per_second=4, transient=False) as live:
                try:
                    while True:
                        await anyio.sleep(REFRESH_S)
                        live.update(self.table())
                finally:
                    live.update(self.table())
        while True:
            await anyio.sleep(HEARTBEAT_S)
            print(self.line(), file=self.stream, flush=True)


def _money(usd: float, credits: float) -> str:
    text = f"${usd:.3f}"
    if credits:
        text += f" {credits:g} cr"
    return text
