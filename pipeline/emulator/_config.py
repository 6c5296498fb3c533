"""How an emulator behaves: task timing, image sizes, keys, and the faults it injects."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

PROVIDERS = ("wavespeed", "skills_video")
SKILLS_STATUS_STYLES = ("upper", "lower")
ERROR_SHAPES = ("default", "split", "legacy", "cli")
RETENTION_S = 7 * 24 * 3600.0  # WaveSpeed keeps predictions and outputs 7 days
_RATE_FIELDS = frozenset(
    {"submit_5xx", "poll_5xx", "reset", "slow_rate", "malformed_json", "rate_429", "task_fail"}
    | {"content_reject", "stuck", "truncate_download", "lost_reply", "accepted_202"}
    | {"permission_denied", "task_cancel", "task_timeout", "sse_drop"}
)
_POSITIVE_FIELDS = frozenset({"max_rps", "url_ttl_s", "retention_s"})
_AT_LEAST_ONE_FIELDS = frozenset({"max_concurrent", "images_per_minute"})


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and (value < 0 or math.isnan(value)):
        raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultProfile:
    """Faults, server-side limits and provider behaviours, applied per provider.

    Every rate defaults to 0. Rates are probabilities per request (or per task, for task
    outcomes), drawn from the emulator's seeded ``random.Random``; a rate of 0 draws
    nothing, so adding a fault never changes the draws of the others.

    Requests and replies:

    - ``submit_5xx`` / ``poll_5xx``: answer 500/502/503/504 instead (no task is created).
    - ``reset``: close the connection without a reply (any API request). A reset submit
      still creates the task unless ``reset_before_create``.
    - ``lost_reply``: *exactly* this fraction of created tasks lose their submit reply
      (the connection drops after the task exists, and is charged): the k-th created task
      does when ``floor(k * rate) > floor((k - 1) * rate)``, so of N created tasks
      ``floor(N * rate)`` do, evenly spread, whatever the seed. (An SSE submit loses its
      stream before the first frame.)
    - ``accepted_202``: a submit that creates its task answers 202 Accepted (same body).
    - ``slow_s`` + ``slow_rate``: wait ``slow_s`` seconds before answering.
    - ``malformed_json``: answer 200 with a truncated JSON body (a submit creates its task).
    - ``rate_429`` + ``retry_after``: answer 429, with ``Retry-After`` when not ``None``.
    - ``error_shape``: the body of error replies. ``default``: WaveSpeed ``{code,
      message}``, skills.video ``{error, code, message}`` with ``error`` repeating
      ``code``; ``split`` (skills.video, as its current docs): ``error`` is the short name
      and ``code`` another, longer one (``INSUFFICIENT_CREDITS`` /
      ``VIDEO_GENERATION_INSUFFICIENT_CREDITS``); ``legacy`` (skills.video): ``{error,
      message}`` only; ``cli`` (WaveSpeed, as its official CLI reads them): ``{message,
      error_code}``. A shape another provider does not know leaves its bodies as default.
    - ``permission_denied``: a submit is answered 403 "the key's role lacks permission".
    - ``auth_fail_after``: every API request after the N-th gets 401.
    - ``credits_after``: every submit after N created tasks gets 402.

    Tasks:

    - ``task_fail``: the task ends failed (WaveSpeed 1403/5000, skills.video
      ``IMAGE_GENERATION_FAILED``).
    - ``task_cancel`` / ``task_timeout``: the task ends ``cancelled`` / ``timeout``
      (WaveSpeed statuses; skills.video ``CANCELED``, or ``FAILED`` with
      ``IMAGE_GENERATION_TIMEOUT``).
    - ``content_reject``: skills.video answers the submit 422; WaveSpeed fails the task
      with code 1200.
    - ``stuck``: the task never leaves processing.
    - ``prompt_triggers``: the prompt markers ``[[fail]]``, ``[[reject]]``, ``[[stuck]]``,
      ``[[cancel]]`` and ``[[timeout]]`` force that outcome, for deterministic tests.
    - ``retention_s``: tasks and their outputs are deleted this long after submit
      (``None``: never). WaveSpeed then answers polls with status ``deleted`` (for
      ``purge_s`` more seconds, then 404; ``None``: forever) and leaves the task out of
      its listing; skills.video answers 404. Image URLs of a deleted task answer 410 (404
      once purged).

    Images:

    - ``url_ttl_s``: image URLs are signed and expire this long after the reply that
      issued them (each poll, listing or SSE frame issues fresh ones); an expired or
      unsigned URL answers 403. ``None``: plain URLs that never expire.
    - ``truncate_download``: an image reply stops halfway through its Content-Length.
    - ``truncate_first_download``: the first download of each image is cut short that
      way; later downloads of it are whole.
    - ``download_delay_s``: every image reply waits this long before its body (a slow
      image host, or a slow link: what makes finished tasks wait for their download).
    - ``sse_drop``: a skills.video SSE stream is closed right after its first frame (the
      queued one, which carries the id); the client must poll.

    Limits:

    - ``max_rps``: token bucket (burst ``max(1, max_rps)``) over all API requests of a
      provider; over the limit -> 429 (``Retry-After`` as above).
    - ``max_concurrent``: tasks not yet terminal. WaveSpeed queues extra tasks (they stay
      ``created`` until a slot frees); skills.video answers 429.
    - ``images_per_minute``: created images in a rolling 60 s window (a submit of
      ``num_images: 4`` counts 4); a submit that would exceed it gets 429 and creates
      nothing. A submit asking for more images than the whole limit passes only when the
      window is empty (it is not refused forever).
    """

    submit_5xx: float = 0.0
    poll_5xx: float = 0.0
    reset: float = 0.0
    reset_before_create: bool = False
    lost_reply: float = 0.0
    accepted_202: float = 0.0
    slow_s: float = 0.0
    slow_rate: float = 0.0
    malformed_json: float = 0.0
    rate_429: float = 0.0
    retry_after: float | None = None
    error_shape: str = "default"
    permission_denied: float = 0.0
    task_fail: float = 0.0
    task_cancel: float = 0.0
    task_timeout: float = 0.0
    content_reject: float = 0.0
    stuck: float = 0.0
    retention_s: float | None = RETENTION_S
    purge_s: float | None = None
    url_ttl_s: float | None = None
    truncate_download: float = 0.0
    truncate_first_download: bool = False
    download_delay_s: float = 0.0
    sse_drop: float = 0.0
    auth_fail_after: int | None = None
    credits_after: int | None = None
    max_rps: float | None = None
    max_concurrent: int | None = None
    images_per_minute: int | None = None
    prompt_triggers: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool | str):
                continue
            if f.name in _RATE_FIELDS:
                _check_rate(f.name, value)
            else:
                _check_non_negative(f.name, value)
            if value is None:
                continue
            if f.name in _POSITIVE_FIELDS and value <= 0:
                raise ValueError(f"{f.name} must be > 0, got {value!r}")
            if f.name in _AT_LEAST_ONE_FIELDS and value < 1:
                raise ValueError(f"{f.name} must be >= 1, got {value!r}")
        if self.error_shape not in ERROR_SHAPES:
            raise ValueError(f"error_shape must be one of {ERROR_SHAPES}, got {self.error_shape!r}")


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
    ``faults`` for one provider.

    ``real_size_images``: serve images of a real generator's weight instead of the small
    flat pictures: PNG about 2 bytes a pixel at 1K (~2 MiB) falling to 1 at 4K (~16 MiB),
    JPEG and WebP proportionally lighter, mostly incompressible noise, still valid files
    of the size the API reports (see :mod:`pipeline.emulator._realsize`). The noise is
    built once per size and format and shared; each image keeps its own bytes.
    ``image_cache_bytes`` bounds the cache of finished images (and, in real-size mode,
    separately, of the shared noise templates).

    Raises ``ValueError`` on out-of-range values.
    """

    latency_s: float = 1.0
    latency_jitter: float = 0.0
    queue_s: float = 0.0
    image_scale: float = 1.0
    real_size_images: bool = False
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
