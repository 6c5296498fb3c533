"""Live counters of what the emulator saw and sent, per provider."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pipeline.emulator._config import PROVIDERS

if TYPE_CHECKING:
    from pipeline.emulator._tasks import Task


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A snapshot of one provider's counters.

    ``requests`` counts every API request received; ``submit_requests`` the submit
    requests among them and ``submits`` the tasks actually created. ``polls`` counts
    status reads (single task or running list), ``downloads`` image replies sent (whole
    or truncated). ``rate_limited`` counts 429s, ``errors`` every non-2xx reply (429s
    included) and ``resets`` connections dropped without a reply. ``duplicate_submits``
    counts created tasks whose normalized input equals an earlier task's.
    ``in_flight`` is the number of tasks not yet terminal now (by the emulator's clock),
    ``peak_in_flight`` its high-water mark. ``open_tasks`` counts tasks the client has not
    yet been shown terminal (by a poll or an SSE frame), and
    ``peak_open_tasks`` its high-water mark: what a client's concurrency limit bounds,
    even at zero latency. ``charged`` is what the created tasks cost: USD for WaveSpeed,
    credits for skills.video (charged at submit, whatever the task's outcome).
    ``noticed`` counts tasks shown terminal, ``notice_lag_s`` the sum over them of how
    long after the task ended the client was first shown it (a poller's detection lag;
    a stream's is nil).
    """

    requests: int = 0
    submit_requests: int = 0
    submits: int = 0
    polls: int = 0
    downloads: int = 0
    rate_limited: int = 0
    errors: int = 0
    resets: int = 0
    duplicate_submits: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    open_tasks: int = 0
    peak_open_tasks: int = 0
    charged: float = 0.0
    noticed: int = 0
    notice_lag_s: float = 0.0


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """A snapshot of both providers' counters (what ``GET /_emulator/stats`` returns)."""

    wavespeed: ProviderStats
    skills_video: ProviderStats

    def for_provider(self, provider: str) -> ProviderStats:
        """One provider's counters. Raises ``KeyError`` for an unknown provider."""
        if provider not in PROVIDERS:
            raise KeyError(provider)
        stats: ProviderStats = getattr(self, provider)
        return stats

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, float]]) -> EmulatorStats:
        """Rebuild from ``as_dict()`` output (e.g. ``GET /_emulator/stats`` of another
        process). Raises ``KeyError``/``TypeError`` if the mapping does not fit."""

        def one(provider: str) -> ProviderStats:
            raw = data[provider]
            values: dict[str, Any] = {f.name: raw[f.name] for f in fields(ProviderStats)}
            return ProviderStats(**values)

        return cls(wavespeed=one("wavespeed"), skills_video=one("skills_video"))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """JSON-ready form: ``{"wavespeed": {...}, "skills_video": {...}}``."""
        return {p: asdict(self.for_provider(p)) for p in PROVIDERS}


@dataclass(slots=True)
class Counters:
    """The mutable counters behind :class:`ProviderStats`, one instance per provider.

    Only the emulator's handlers touch these, all on one event loop, so no lock.
    """

    requests: int = 0
    submit_requests: int = 0
    submits: int = 0
    polls: int = 0
    downloads: int = 0
    rate_limited: int = 0
    errors: int = 0
    resets: int = 0
    duplicate_submits: int = 0
    peak_open_tasks: int = 0
    charged: float = 0.0
    noticed: int = 0
    notice_lag_s: float = 0.0
    open_ids: set[str] = field(default_factory=set, repr=False)
    seen_inputs: set[bytes] = field(default_factory=set, repr=False)

    def record_submit(self, task_id: str, normalized_input: dict[str, Any], charge: float) -> None:
        """Count a created task and its charge, and whether an earlier task had the
        same normalized input."""
        self.submits += 1
        self.charged += charge
        self.open_ids.add(task_id)
        self.peak_open_tasks = max(self.peak_open_tasks, len(self.open_ids))
        canonical = json.dumps(normalized_input, sort_keys=True, separators=(",", ":"))
        # A 16-byte digest per task keeps memory flat on very large runs.
        key = hashlib.blake2b(canonical.encode(), digest_size=16).digest()
        if key in self.seen_inputs:
            self.duplicate_submits += 1
        else:
            self.seen_inputs.add(key)

    def record_shown(self, task: Task, now: float, terminal: bool) -> None:
        """A reply showed the client this task at ``now``; once terminal, it is no longer
        open (and the first such reply's delay after the task's end is counted)."""
        if terminal and task.id in self.open_ids:
            self.open_ids.discard(task.id)
            self.noticed += 1
            self.notice_lag_s += max(0.0, now - task.ends)

    def record_status(self, status: int) -> None:
        """Count a reply by its HTTP status."""
        if status >= 400:
            self.errors += 1
        if status == 429:
            self.rate_limited += 1

    def snapshot(self, in_flight: int, peak_in_flight: int) -> ProviderStats:
        """A frozen copy, with the task store's in-flight figures filled in."""
        return ProviderStats(
            requests=self.requests,
            submit_requests=self.submit_requests,
            submits=self.submits,
            polls=self.polls,
            downloads=self.downloads,
            rate_limited=self.rate_limited,
            errors=self.errors,
            resets=self.resets,
            duplicate_submits=self.duplicate_submits,
            in_flight=in_flight,
            peak_in_flight=peak_in_flight,
            open_tasks=len(self.open_ids),
            peak_open_tasks=self.peak_open_tasks,
            charged=round(self.charged, 6),
            noticed=self.noticed,
            notice_lag_s=self.notice_lag_s,
        )
