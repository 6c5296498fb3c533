"""ledger.json read back as typed, immutable records for the report.

The reader is lenient about what it does not need (unknown fields are ignored, optional
fields default) so a report can be drawn from a ledger written by an older or newer version,
or from a batch that is still running. Everything here is untrusted user data: the
renderer escapes it and the thumbnailer checks every path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pipeline.errors import UsageError
from pipeline.jobs import Flag, JobStatus

LEDGER_NAME = "ledger.json"


def _str_values(value: Any) -> Any:
    """Axis values are shown as text; a sweep may hold numbers (``n: [1, 2]``)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
    return value


def _none_to_empty(value: Any) -> Any:
    return [] if value is None else value


def _none_to_empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _none_to_blank(value: Any) -> Any:
    return "" if value is None else value


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ImageEntry(_Record):
    """One image file of a job; ``path`` is relative to the batch folder (unchecked)."""

    path: str
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    format: str | None = None


class JobError(_Record):
    """Why a job failed (or the last error noted on a job still pending)."""

    code: str | None = None
    message: str | None = None
    http_status: int | None = None
    provider_code: str | int | None = None


class Cost(_Record):
    usd: float | None = None
    credits: float | None = None
    basis: str | None = None


class JobEntry(_Record):
    """One job as ledger.json lists it."""

    id: str
    provider: str = ""
    model: str | None = None
    prompt_id: str | None = None
    prompt: Annotated[str, BeforeValidator(_none_to_blank)] = ""
    params: Annotated[dict[str, Any], BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=dict
    )
    variant: Annotated[dict[str, str], BeforeValidator(_str_values)] = Field(default_factory=dict)
    status: str = "pending"
    attempts: int = 0
    latency_s: float | None = None
    images: Annotated[list[ImageEntry], BeforeValidator(_none_to_empty)] = Field(
        default_factory=list
    )
    cost: Cost | None = None
    error: JobError | None = None
    flags: Annotated[list[str], BeforeValidator(_none_to_empty)] = Field(default_factory=list)

    @property
    def superseded(self) -> bool:
        """Edited out of the manifest: listed for its cost, not part of the batch any more."""
        return Flag.SUPERSEDED in self.flags

    @property
    def shown_status(self) -> str:
        """``completed`` / ``failed`` / ``pending``: a submitted job is still pending."""
        settled = (JobStatus.COMPLETED, JobStatus.FAILED)
        return self.status if self.status in settled else JobStatus.PENDING


class Totals(_Record):
    jobs: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    images: int = 0
    cost_usd: float = 0.0
    credits: float = 0.0


class ProviderTotals(Totals):
    requests: int = 0
    rate_limited: int = 0


class Ledger(_Record):
    """The whole ledger; ``totals`` is None only for a ledger that lacks it."""

    name: str = ""
    manifest: str = ""
    started_at: str | None = None
    updated_at: str | None = None
    finished: bool = False
    totals: Totals | None = None
    providers: dict[str, ProviderTotals] = Field(default_factory=dict)
    jobs: list[JobEntry] = Field(default_factory=list)

    @property
    def current_jobs(self) -> list[JobEntry]:
        """The jobs of the batch as it stands (superseded ones left out)."""
        return [j for j in self.jobs if not j.superseded]

    def effective_totals(self) -> Totals:
        """The ledger's own totals; a ledger without them (an older or a partial one) is
        counted from its jobs, superseded ones left out, as the run counts."""
        if self.totals is not None:
            return self.totals
        jobs = self.current_jobs
        return Totals(
            jobs=len(jobs),
            completed=sum(j.status == JobStatus.COMPLETED for j in jobs),
            failed=sum(j.status == JobStatus.FAILED for j in jobs),
            pending=sum(j.shown_status == JobStatus.PENDING for j in jobs),
            images=sum(len(j.images) for j in jobs),
            cost_usd=sum((j.cost.usd or 0.0) for j in self.jobs if j.cost),
            credits=sum((j.cost.credits or 0.0) for j in self.jobs if j.cost),
        )


def load_ledger(directory: Path, text: bytes | None = None) -> Ledger:
    """Read ``directory/ledger.json`` (or ``text``: the ledger's JSON, as the run state
    gives it).

    Raises ``UsageError`` when the folder has no ledger, or the ledger is not valid JSON of
    the expected shape.
    """
    path = directory / LEDGER_NAME
    if text is None and not path.is_file():
        raise UsageError(f"{directory}: no batch here ({LEDGER_NAME} not found)")
    try:
        return Ledger.model_validate_json(text if text is not None else path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise UsageError(f"{path}: not a readable ledger: {where}: {first['msg']}") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
