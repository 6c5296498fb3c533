"""Fault decisions: the server-side rate limit, and each task's drawn fate.

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
TRIGGER_FAIL = "[[fail]]"
TRIGGER_REJECT = "[[reject]]"
TRIGGER_STUCK = "[[stuck]]"


def chance(rng: random.Random, rate: float) -> bool:
    """True with probability ``rate`` (draws nothing when the rate is 0)."""
    return rate > 0 and rng.random() < rate


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked; one per request."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, tokens={self.tokens:.2f}/{self.capacity})"

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the limit."""
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def rejects_content(profile: FaultProfile, rng: random.Random, prompt: str) -> bool:
    """Whether a submit is refused by moderation (skills.video answers 422)."""
    if profile.prompt_triggers and TRIGGER_REJECT in prompt:
        return True
    return chance(rng, profile.content_reject)


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
    if chance(rng, profile.task_fail):
        if provider == "wavespeed":
            code, message = rng.choice(WAVESPEED_FAILURES)
        else:
            code, message = SKILLS_FAILURE
        return Fate(latency, queue, Outcome.FAILED, code, message)
    return Fate(latency, queue, Outcome.COMPLETED)
