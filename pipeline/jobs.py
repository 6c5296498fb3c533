"""The records that cross layer boundaries: a job and its resolved parameters."""

from __future__ import annotations

from dataclasses import dataclass, field


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
