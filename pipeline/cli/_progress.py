"""Live progress on stderr: a rich table on a terminal, a heartbeat line otherwise."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.clock import Clock
from pipeline.engine import LaneStats, LaneView

HEARTBEAT_S = 5.0
REFRESH_S = 0.5
_COLUMNS = ("provider", "queued", "in flight", "done", "failed", "images", "spent", "req/s", "ETA")


class Progress:
    """Samples the lanes' figures (``view``) on ``clock``; never touches the hot path."""

    def __init__(self, view: LaneView, stream: TextIO, *, clock: Clock) -> None:
        self.view = view
        self.stream = stream
        self.clock = clock
        self.tty = stream.isatty()
        self._t0 = clock.now()
        self._last: dict[str, tuple[float, int]] = {}

    def _rate(self, name: str, s: LaneStats) -> float:
        now = self.clock.now()
        t, n = self._last.get(name, (self._t0, 0))
        self._last[name] = (now, s.requests)
        return (s.requests - n) / (now - t) if now > t else 0.0

    def _eta(self, s: LaneStats) -> str:
        done = s.completed + s.failed
        left = s.queued + s.in_flight
        elapsed = self.clock.now() - self._t0
        if not done or not left:
            return "-"
        return f"{left * elapsed / done:.0f}s"

    def table(self) -> Table:
        t = Table(title="pipeline", expand=False)
        for col in _COLUMNS:
            t.add_column(col, justify="left" if col == "provider" else "right")
        for name, s in self.view().items():
            t.add_row(
                name,
                str(s.queued),
                str(s.in_flight),
                str(s.completed),
                str(s.failed),
                str(s.images),
                _money(s.usd, s.credits),
                f"{self._rate(name, s):.1f}",
                self._eta(s),
            )
        return t

    def line(self) -> str:
        parts = []
        for name, s in self.view().items():
            parts.append(
                f"{name}: {s.completed} done, {s.failed} failed, {s.in_flight} in flight, "
                f"{s.queued} queued, {_money(s.usd, s.credits)}, "
                f"{self._rate(name, s):.1f} req/s, ETA {self._eta(s)}"
            )
        return "pipeline: " + " | ".join(parts)

    async def run(self) -> None:
        """Show progress until cancelled."""
        if self.tty:
            console = Console(file=self.stream)
            with Live(self.table(), console=console, refresh_per_second=4, transient=False) as live:
                try:
                    while True:
                        await self.clock.sleep(REFRESH_S)
                        live.update(self.table())
                finally:
                    live.update(self.table())
        while True:
            await self.clock.sleep(HEARTBEAT_S)
            print(self.line(), file=self.stream, flush=True)


def _money(usd: float, credits: float) -> str:
    text = f"${usd:.3f}"
    if credits:
        text += f" {credits:g} cr"
    return text
