"""The records that cross layer boundaries: a job, its parameters, its status and flags."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class JobStatus(enum.StrEnum):
    """Where a job stands in the run state (the write-ahead protocol of ``pipeline.store``).

    ``pending -> intent -> submitted -> completed | failed``. The ledger shows an
    ``intent`` as ``submitted`` (the request may have reached the provider) and counts
    everything that is not settled as pending.
    """

    PENDING = "pending"
    INTENT = "intent"  # committed before the submit leaves the machine
    SUBMITTED = "submitted"  # the provider's task id is recorded
    COMPLETED = "completed"  # every image verified and stored
    FAILED = "failed"

    @property
    def shown(self) -> JobStatus:
        """The status ledger.json shows (design.md: completed, failed, pending, submitted)."""
        return JobStatus.SUBMITTED if self is JobStatus.INTENT else self

    @property
    def settled(self) -> bool:
        """Completed or failed: nothing more happens to the job in this run."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


class Flag(enum.StrEnum):
    """Something noteworthy that happened to a job, listed in its ledger entry."""

    POSSIBLE_DUPLICATE = "possible_duplicate"  # resubmitted after an unknown outcome
    RECONCILED = "reconciled"  # a lost submit reply's task was found at the provider
    REDOWNLOADED = "redownloaded"  # files were missing and fetched again
    REGENERATED = "regenerated"  # files were missing and the job ran again
    SUPERSEDED = "superseded"  # the manifest entry changed or went; kept for the record


@dataclass(frozen=True, slots=True)
class JobParams:
    """Resolved, provider-neutral generation settings of one job.

    ``resolution`` is canonical lower case (``1k``/``2k``/``4k``); each adapter spells it
    the way its API wants.
    """

    aspect_ratio: str = "1:1"
    resolution: str = "1k"
    output_format: str = "png"
    n: int = 1
    image_urls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "output_format": self.output_format,
            "n": self.n,
        }
        if self.image_urls:
            d["image_urls"] = list(self.image_urls)
        return d


@dataclass(frozen=True, slots=True)
class Job:
    """One API request: a prompt with one resolved variant.

    ``id`` is stable across runs, unique within a manifest and a safe file name.
    ``variant`` holds the swept axis values and template variables that distinguish this
    job from its siblings (for the ledger and the contact sheet).
    ``source`` / ``line`` say where the prompt was written, for error messages.
    """

    id: str
    prompt_id: str
    provider: str
    prompt: str
    params: JobParams
    variant: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    source: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Per-provider knobs from the manifest (``providers.<name>``), defaults filled in."""

    requests_per_second: float
    max_concurrent: int
    job_timeout_s: float
    usd_per_credit: float | None = None
    base_url: str | None = None
    # The account's images per minute (WaveSpeed counts a job's images; from ``tier`` or
    # given); None: not stated in the manifest (a run then assumes the lowest tier).
    images_per_minute: float | None = None
    tier: str | None = None
    stream: bool = False  # follow tasks on the provider's event stream instead of polls


@dataclass(frozen=True, slots=True)
class Budget:
    """Spend caps; ``None`` means no cap."""

    max_usd: float | None = None
    max_credits: float | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """A validated, expanded manifest: everything a run needs, nothing sent yet."""

    name: str
    manifest_path: str
    output_dir: str
    jobs: tuple[Job, ...]
    providers: dict[str, ProviderSettings] = field(hash=False)
    budget: Budget = Budget()
