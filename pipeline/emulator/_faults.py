"""Fault decisions: each task's drawn fate, and the evenly spread ``lost_reply`` choice.

All randomness comes from the emulator's one seeded ``random.Random``, so a run is
repeatable for a given request order. A rate of 0 draws nothing: without faults, only
latency jitter consumes the generator.
"""

from __future__ import annotations

import random

from pipeline.emulator._config import EmulatorConfig, FaultProfile
from pipeline.emulator._tasks import Fate, Outcome

WAVESPEED_FAILURES: tuple[tuple[int, str], ...] = (
    (1403, "Task execution failed"),
    (5000, "Internal server error"),
)
WAVESPEED_CONTENT = (1200, "Content moderation: the prompt or output was flagged")
SKILLS_FAILURE = ("IMAGE_GENERATION_FAILED", "Image generation failed")
SKILLS_TIMEOUT = ("IMAGE_GENERATION_TIMEOUT", "Image generation timed out")
CANCELLED_MESSAGE = "Task was cancelled"
TIMEOUT_MESSAGE = "Task timed out"
TRIGGER_FAIL = "[[fail]]"
TRIGGER_REJECT = "[[reject]]"
TRIGGER_STUCK = "[[stuck]]"
TRIGGER_CANCEL = "[[cancel]]"
TRIGGER_TIMEOUT = "[[timeout]]"
# Products like 0.29 * 100 land a hair under the integer in floating point.
_EPSILON = 1e-9


def chance(rng: random.Random, rate: float) -> bool:
    """True with probability ``rate`` (draws nothing when the rate is 0)."""
    return rate > 0 and rng.random() < rate


def spaced(rate: float, k: int) -> bool:
    """Whether the ``k``-th event (1-based) is one of an exact ``rate`` fraction, evenly
    spread: of the first N events, ``floor(N * rate)`` are. Draws nothing."""
    if rate <= 0 or k < 1:
        return False
    return int(k * rate + _EPSILON) > int((k - 1) * rate + _EPSILON)


def rejects_content(profile: FaultProfile, rng: random.Random, prompt: str) -> bool:
    """Whether a submit is refused by moderation (skills.video answers 422)."""
    if profile.prompt_triggers and TRIGGER_REJECT in prompt:
        return True
    return chance(rng, profile.content_reject)


def _ended(provider: str, outcome: Outcome) -> tuple[str | int | None, str]:
    if outcome is Outcome.CANCELLED:
        return None, CANCELLED_MESSAGE
    return (None, TIMEOUT_MESSAGE) if provider == "wavespeed" else SKILLS_TIMEOUT


def draw_fate(config: EmulatorConfig, provider: str, rng: random.Random, prompt: str) -> Fate:
    """Draw a new task's latency, queue time and outcome."""
    profile = config.faults_for(provider)
    latency = config.latency_s
    if config.latency_jitter > 0 and latency > 0:
        latency *= rng.uniform(1 - config.latency_jitter, 1 + config.latency_jitter)
    queue = min(config.queue_s, latency)
    triggers = profile.prompt_triggers
    if (triggers and TRIGGER_STUCK in prompt) or chance(rng, profile.stuck):
        return Fate(latency, queue, Outcome.STUCK)
    if provider == "wavespeed" and (
        (triggers and TRIGGER_REJECT in prompt) or chance(rng, profile.content_reject)
    ):
        return Fate(latency, queue, Outcome.FAILED, *WAVESPEED_CONTENT)
    if triggers and TRIGGER_FAIL in prompt:
        code, message = WAVESPEED_FAILURES[0] if provider == "wavespeed" else SKILLS_FAILURE
        return Fate(latency, queue, Outcome.FAILED, code, message)
    for trigger, rate, outcome in (
        (TRIGGER_CANCEL, profile.task_cancel, Outcome.CANCELLED),
        (TRIGGER_TIMEOUT, profile.task_timeout, Outcome.TIMED_OUT),
    ):
        if (triggers and trigger in prompt) or chance(rng, rate):
            return Fate(latency, queue, outcome, *_ended(provider, outcome))
    if chance(rng, profile.task_fail):
        if provider == "wavespeed":
            code, message = rng.choice(WAVESPEED_FAILURES)
        else:
            code, message = SKILLS_FAILURE
        return Fate(latency, queue, Outcome.FAILED, code, message)
    return Fate(latency, queue, Outcome.COMPLETED)
