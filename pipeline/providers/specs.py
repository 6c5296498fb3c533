"""What each provider accepts and charges: the documented limits and price rules.

This module is pure data (no I/O, no aiohttp) so the manifest validator, the planner and
the adapters share one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.jobs import JobParams

ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_PROMPT_CHARS = 2500
MAX_IMAGE_URLS = 10


@dataclass(frozen=True, slots=True)
class Cost:
    """Money spent (or estimated) for one job.

    ``basis`` is ``price_table`` (computed from the published prices), ``reported`` (the
    provider's own usage figure) or ``estimate`` (before the provider said anything).
    """

    usd: float | None
    credits: float | None
    basis: str


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Documented limits, defaults and prices of one provider's image model."""

    name: str
    model: str
    env_key: str
    env_base_url: str
    default_base_url: str
    resolutions: tuple[str, ...]
    n_max: int
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS
    output_formats: tuple[str, ...] = OUTPUT_FORMATS
    n_min: int = 1
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_image_urls: int = MAX_IMAGE_URLS
    # Conservative defaults: the lowest documented tier, or a guess where none is known.
    default_requests_per_second: float = 2.0
    default_max_concurrent: int = 3
    default_job_timeout_s: float = 600.0
    # Prior for the poll schedule before any task of the run has completed: the median
    # task duration, the spread (standard deviation) of log-durations, and the shortest
    # time the provider allows between two checks of one task.
    typical_latency_s: float = 15.0
    latency_spread: float = 0.5
    min_poll_interval_s: float = 0.0
    # Price rules.
    usd_per_image: dict[str, float] | None = None
    credits_per_image: dict[str, float] | None = None
    # The submit reply reports the real charge (so a budget learns the price from the
    # first reply); otherwise the price table is the charge.
    cost_reported_on_submit: bool = False
    # What the API offers beyond submit and poll: ``ProviderAdapter.running`` (unfinished
    # tasks, with their input), ``recent`` (every task since a time, any status),
    # ``cancel`` and ``stream`` (a submit that streams the task's status changes).
    lists_unfinished: bool = False
    lists_recent: bool = False
    cancels: bool = False
    streams: bool = False
    # How long the provider keeps a task and its outputs (seconds), None when unknown:
    # past it, a poll may answer "deleted" (an ``expired`` failure) or 404, and
    # downloads fail.
    retention_s: float | None = None
    # Account tiers: name -> (images per minute, concurrent tasks); ``default_tier`` is
    # what a run assumes when the manifest states no limit of the account.
    tiers: dict[str, tuple[float, int]] | None = None
    default_tier: str | None = None

    def estimate(self, params: JobParams, usd_per_credit: float | None = None) -> Cost:
        """Estimated cost of one job before it is sent (for plans and budget reservations)."""
        if self.usd_per_image is not None:
            price = round(self.usd_per_image[params.resolution] * params.n, 6)
            return Cost(usd=price, credits=None, basis="estimate")
        assert self.credits_per_image is not None
        credits = self.credits_per_image[params.resolution] * params.n
        usd = round(credits * usd_per_credit, 6) if usd_per_credit is not None else None
        return Cost(usd=usd, credits=credits, basis="estimate")


WAVESPEED = ProviderSpec(
    name="wavespeed",
    model="kling-image-o3",
    env_key="WAVESPEED_API_KEY",
    env_base_url="WAVESPEED_BASE_URL",
    default_base_url="https://api.wavespeed.ai",
    resolutions=("1k", "2k", "4k"),
    n_max=9,
    # With no tier stated: the lowest tier's concurrency (Bronze, 2 on the newer page).
    default_requests_per_second=2.0,
    default_max_concurrent=2,
    usd_per_image={"1k": 0.028, "2k": 0.028, "4k": 0.056},
    cancels=True,  # by deleting the prediction
    lists_recent=True,  # POST /api/v3/predictions: the last 7 days, without the input
    retention_s=7 * 24 * 3600.0,
    # Poll prior: Kling O3 images take about 5-20 s; the docs ask for at least 2 s
    # between checks of an image task.
    latency_spread=0.5,
    min_poll_interval_s=2.0,
    # Images per minute and concurrent tasks. The tier page exists in two versions (older:
    # Bronze 10/3, Silver 500/100, Gold 3000/2000, Ultra 5000/5000; newer: Bronze 2/2,
    # Silver 500/300, Gold 3000/3000, Ultra 5000/10000): each tier here is the lower of
    # the two, so a run never assumes more than the account may have.
    tiers={
        "bronze": (2.0, 2),
        "silver": (500.0, 100),
        "gold": (3000.0, 2000),
        "ultra": (5000.0, 5000),
    },
    default_tier="bronze",
)

SKILLS_VIDEO = ProviderSpec(
    name="skills_video",
    model="kling-ai/o3-image",
    env_key="SKILLS_VIDEO_API_KEY",
    env_base_url="SKILLS_VIDEO_BASE_URL",
    default_base_url="https://open.skills.video",
    resolutions=("1k", "2k"),
    n_max=4,
    # Limits are undocumented: start conservative and adapt to 429.
    default_requests_per_second=2.0,
    default_max_concurrent=2,
    # The docs' example charges 20 credits for one 1K image; 2K is assumed double.
    credits_per_image={"1k": 20.0, "2k": 40.0},
    cost_reported_on_submit=True,
    lists_unfinished=True,
    streams=True,  # POST /api/v1/generation/sse/kling-ai/o3-image
)

SPECS: dict[str, ProviderSpec] = {s.name: s for s in (WAVESPEED, SKILLS_VIDEO)}
PROVIDER_NAMES: tuple[str, ...] = tuple(SPECS)
