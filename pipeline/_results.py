"""The records a library call returns: ``RunResult`` (how a run ended) and
``BatchStatus`` (a batch's progress and spend); ``import pipeline`` re-exports both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: the batch's totals (as ledger.json's), and the exit code the
    command line would give (0 all completed, 1 some failed or pending, 3 aborted, 130
    interrupted). ``aborted_reason`` says why a run aborted (budget reached, key
    rejected, out of credit), else None. ``providers``: ledger.json's figures per
    provider."""

    name: str
    out: str
    ledger_path: str
    jobs: int
    completed: int
    failed: int
    pending: int
    images: int
    cost_usd: float
    credits: float
    interrupted: bool
    exit_code: int
    aborted_reason: str | None = None
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch's progress and spend (``pipeline status``), also while it runs.

    ``totals`` and ``providers`` are ledger.json's; ``failures`` groups failed jobs by
    error code (count and examples). ``as_dict()`` (or ``status["totals"]``) gives the
    document ``status --json`` prints."""

    name: str
    manifest: str
    started_at: str
    totals: Mapping[str, Any]
    in_flight: int
    progress: float
    providers: Mapping[str, Mapping[str, Any]]
    failures: Mapping[str, Mapping[str, Any]]

    @property
    def jobs(self) -> int:
        return int(self.totals["jobs"])

    @property
    def completed(self) -> int:
        return int(self.totals["completed"])

    @property
    def failed(self) -> int:
        return int(self.totals["failed"])

    @property
    def pending(self) -> int:
        return int(self.totals["pending"])

    @property
    def cost_usd(self) -> float:
        return float(self.totals["cost_usd"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "manifest": self.manifest,
            "started_at": self.started_at,
            "totals": dict(self.totals),
            "in_flight": self.in_flight,
            "progress": self.progress,
            "providers": {k: dict(v) for k, v in self.providers.items()},
            "failures": {k: dict(v) for k, v in self.failures.items()},
        }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]
