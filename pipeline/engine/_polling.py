"""When to poll a task: start near its expected completion, then follow the hazard.

Design note
-----------
Fixed 1 s polling (the official SDK) spends a request every second of every task, from
the shared request budget of the lane. We instead choose poll times that minimise, for a
task whose duration ``T`` has density ``f`` and survival ``S``, the expected detection lag
plus ``c`` seconds per poll::

    cost = ∫ f(t)·δ(t)/2 dt  +  c·∫ S(t)/δ(t) dt      (δ(t): the interval in use at t)

Minimising pointwise gives ``δ(t) = sqrt(2c / h(t))`` with ``h = f/S`` the hazard rate:
poll often where tasks are likely to be finishing right now, rarely where they are not.
Each lane learns ``f`` as a log-normal fit of its observed durations (running mean and
variance of log-durations, exponentially forgetting so it follows drift), and ``c`` is a
fixed fraction ``kappa`` of the median duration, which makes the schedule scale-free.
The first poll goes at the ``first_z`` quantile (≈ 4%), before which almost no task ends.

Safeguards: intervals stay within ``[min_interval, max_interval]`` and never exceed
``max_ratio`` × the time already elapsed, which bounds the lag of tasks the model did not
expect (a slow outlier, a changed provider). Before ``warm_after`` completions (cold
start) the schedule starts at ``cold_first`` and grows by ``cold_growth`` per poll.

Warm-up: with many tasks in flight the first completions are the *shortest* ones, so a
fit of the first few is narrow and early; trusted, it polls every running task at
``min_interval`` until later completions widen it. Hence ``warm_after`` = 20 and a floor
``min_sigma`` on the fitted spread. The cold start is short and grows fast (0.1 s x 1.6):
a fast provider is seen done after 0.1 s, a 15 s task costs about 10 polls, and the lag
stays under 5 % of the duration while the schedule learns (benchmarks/README.md, fig. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class PollSettings:
    """Constants of the schedule (the time-valued ones scale with the latency)."""

    min_delay: float = 0.005
    min_interval: float = 0.05
    max_interval: float = 10.0
    max_ratio: float = 0.25
    kappa: float = 0.005
    first_z: float = -1.75
    min_sigma: float = 0.3
    cold_first: float = 0.1
    cold_growth: float = 1.6
    warm_after: int = 20
    memory: int = 200


class PollSchedule:
    """Per-lane poll timing that learns from observed task durations."""

    __slots__ = ("_mean", "_n", "_var", "settings")

    def __init__(self, settings: PollSettings | None = None) -> None:
        self.settings = settings or PollSettings()
        self._n = 0
        self._mean = 0.0
        self._var = 0.0

    @property
    def warm(self) -> bool:
        return self._n >= self.settings.warm_after

    @property
    def median(self) -> float:
        return math.exp(self._mean)

    @property
    def sigma(self) -> float:
        return max(self.settings.min_sigma, math.sqrt(self._var))

    def observe(self, duration: float) -> None:
        """Teach the schedule one task's duration (seconds from submit to completion)."""
        x = math.log(max(duration, 1e-3))
        self._n += 1
        # Welford for the first `memory` samples, then an exponential moving estimate.
        alpha = 1.0 / min(self._n, self.settings.memory)
        delta = x - self._mean
        self._mean += alpha * delta
        self._var = (1 - alpha) * (self._var + alpha * delta * delta)

    def hazard(self, t: float) -> float:
        """The learned hazard rate at ``t`` seconds (probability density of finishing now,
        given still running)."""
        sigma = self.sigma
        z = (math.log(max(t, 1e-6)) - self._mean) / sigma
        pdf = math.exp(-0.5 * z * z) / (max(t, 1e-6) * sigma * _SQRT2PI)
        survival = 0.5 * math.erfc(z / _SQRT2)
        if survival < 1e-12:
            # Far past every observation: the fit says nothing useful.
            return 0.0
        return pdf / survival

    def first_delay(self) -> float:
        """Seconds from submit to the first poll."""
        s = self.settings
        if not self.warm:
            return s.cold_first
        return max(s.min_delay, math.exp(self._mean + s.first_z * self.sigma))

    def next_delay(self, elapsed: float, previous: float) -> float:
        """Seconds until the next poll, given time since submit and the previous delay."""
        s = self.settings
        if not self.warm:
            step = previous * s.cold_growth
        else:
            h = self.hazard(elapsed)
            cost = s.kappa * self.median
            step = math.sqrt(2.0 * cost / h) if h > 0 else s.max_interval
            step = min(step, s.max_ratio * elapsed)
        return min(s.max_interval, max(s.min_interval, step))

    def __repr__(self) -> str:
        return f"PollSchedule(n={self._n}, median={self.median:.3f}s, sigma={self.sigma:.3f})"
