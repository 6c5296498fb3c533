"""How an emulator behaves: task timing, image sizes, keys, and the faults it injects."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

PROVIDERS = ("wavespeed", "skills_video")
SKILLS_STATUS_STYLES = ("upper", "lower")
_RATE_FIELDS = frozenset(
    {"submit_5xx", "poll_5xx", "reset", "slow_rate", "malformed_json", "rate_429", "task_fail"}
    | {"content_reject", "stuck", "truncate_download"}
)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and (value < 0 or math.isnan(value)):
        raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultProfile:
    """Faults and server-side limits, applied per provider. Every rate defaults to 0.

    Rates are probabilities per request (or per task, for task outcomes), drawn from the
    emulator's seeded ``random.Random``.

    - ``submit_5xx`` / ``poll_5xx``: answer 500/502/503/504 instead (no task is created).
    - ``reset``: close the connection without a reply. A reset submit still creates the
      task unless ``reset_before_create`` (the ambiguous outcome a client must reconcile).
    - ``slow_s`` + ``slow_rate``: wait ``slow_s`` seconds before answering.
    - ``malformed_json``: answer 200 with a truncated JSON body (a submit creates its task).
    - ``rate_429`` + ``retry_after``: answer 429, with ``Retry-After`` when not ``None``.
    - ``task_fail``: the task ends failed (WaveSpeed 1403/5000, skills.video
      ``IMAGE_GENERATION_FAILED``).
    - ``content_reject``: skills.video answers the submit 422; WaveSpeed fails the task
      with code 1200.
    - ``stuck``: the task never leaves processing.
    - ``truncate_download``: an image reply stops halfway through its Content-Length.
    - ``auth_fail_after``: every API request after the N-th gets 401.
    - ``credits_after``: every submit after N created tasks gets 402.
    - ``max_rps``: token bucket (burst ``max(1, max_rps)``) over all API requests of a
      provider; over the limit -> 429 (``Retry-After`` as above).
    - ``max_concurrent``: tasks not yet terminal. WaveSpeed queues extra tasks (they stay
      ``created`` until a slot frees); skills.video answers 429.
    - ``prompt_triggers``: the prompt markers ``[[fail]]``, ``[[reject]]`` and
      ``[[stuck]]`` force that outcome, for deterministic tests.
    """

    submit_5xx: float = 0.0
    poll_5xx: float = 0.0
    reset: float = 0.0
    reset_before_create: bool = False
    slow_s: float = 0.0
    slow_rate: float = 0.0
    malformed_json: float = 0.0
    rate_429: float = 0.0
    retry_after: float | None = None
    task_fail: float = 0.0
    content_reject: float = 0.0
    stuck: float = 0.0
    truncate_download: float = 0.0
    auth_fail_after: int | None = None
    credits_after: int | None = None
    max_rps: float | None = None
    max_concurrent: int | None = None
    prompt_triggers: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if f.name in _RATE_FIELDS:
                _check_rate(f.name, value)
            else:
                _check_non_negative(f.name, value)
        if self.max_rps is not None and self.max_rps <= 0:
            raise ValueError(f"max_rps must be > 0, got {self.max_rps!r}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent!r}")


def _default_credits() -> Mapping[str, float]:
    return {"1K": 20.0, "2K": 40.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """Everything that shapes one emulator instance.

    A task's life: queued for ``queue_s`` (capped at its latency), then processing, then
    terminal at ``latency_s`` after it started (each task's latency is drawn uniformly in
    ``latency_s * (1 ± latency_jitter)``). ``latency_s = 0`` completes at the first poll.
    ``api_keys`` maps a provider name to its one accepted bearer key; a provider absent
    from it (or ``None``) accepts any non-empty bearer. ``provider_faults`` overrides
    ``faults`` for one provider. Raises ``ValueError`` on out-of-range values.
    """

    latency_s: float = 1.0
    latency_jitter: float = 0.0
    queue_s: float = 0.0
    image_scale: float = 1.0
    api_keys: Mapping[str, str] | None = None
    credits_per_image: Mapping[str, float] = field(default_factory=_default_credits)
    seed: int = 0
    faults: FaultProfile = field(default_factory=FaultProfile)
    provider_faults: Mapping[str, FaultProfile] = field(default_factory=dict)
    skills_status_style: str = "upper"
    sync_timeout_s: float = 60.0
    wavespeed_balance_usd: float = 100.0
    image_cache_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("latency_s", "queue_s", "sync_timeout_s", "image_cache_bytes"):
            _check_non_negative(name, getattr(self, name))
        _check_rate("latency_jitter", self.latency_jitter)
        if not self.image_scale > 0:
            raise ValueError(f"image_scale must be > 0, got {self.image_scale!r}")
        if self.skills_status_style not in SKILLS_STATUS_STYLES:
            raise ValueError(f"skills_status_style must be one of {SKILLS_STATUS_STYLES}")
        unknown = set(self.provider_faults) - set(PROVIDERS)
        if unknown:
            raise ValueError(f"provider_faults names unknown providers: {sorted(unknown)}")

    def faults_for(self, provider: str) -> FaultProfile:
        """The fault profile that applies to ``provider``."""
        return self.provider_faults.get(provider, self.faults)

    def key_for(self, provider: str) -> str | None:
        """The one bearer key ``provider`` accepts, or ``None`` for any non-empty key."""
        return None if self.api_keys is None else self.api_keys.get(provider)
