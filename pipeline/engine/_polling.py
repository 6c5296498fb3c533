"""When to poll a task: start from the provider's prior, learn fast, follow the hazard.

Design note
-----------
Fixed 1 s polling (the official SDK) spends a request every second of every task, from
the lane's shared request budget. We choose poll times that minimise, for a task whose
duration ``T`` has density ``f`` and survival ``S``, the expected detection lag plus ``c``
seconds per poll::

    cost = ∫ f(t)·δ(t)/2 dt  +  c·∫ S(t)/δ(t) dt      (δ(t): the interval in use at t)

Minimising pointwise gives ``δ(t) = sqrt(2c / h(t))`` with ``h = f/S`` the hazard rate:
poll often where tasks are likely to be finishing right now, rarely where they are not.
``f`` is a log-normal, ``c`` a fixed fraction ``kappa`` of its median (scale-free), and
the first look goes at its ``first_z`` quantile (≈ 4 %), before which almost no task ends.

Prior and learning: a ``PollPrior`` (the spec's typical duration, spread of log-durations
and minimum between two checks) is what a lane believes before anything finished. The
evidence goes into a life table over log-spaced ages: a completion is an event at its
age; each poll (``next_delay(elapsed, previous)``, called after every poll) adds
``previous`` seconds of exposure before ``elapsed`` (up to the completion, for the call
right after ``observe``); a completion no poll reported (streamed) was running since its
submit. The prior counts as ``weight`` pseudo-tasks, so a bin's hazard is the
gamma-Poisson blend ``(events + prior's) / (exposure + prior's)``: a few completions
outweigh the prior where they happened, and the prior speaks where nothing was seen yet.
The log-normal is fitted to two quantiles (``fit_z``) of the table's survival; all of
it, prior included, is forgotten exponentially after ``memory`` completions (drift).

Warm-up: with many tasks in flight the first completions are the *shortest* ones; a fit
of completions alone is early and narrow and polls every running task at the minimum
interval. The table counts the tasks still running as survivors (censored), so the first
completions move the fit only as far as they should.

Safeguards: intervals stay within ``[min_interval, max_interval]``, never exceed
``max_ratio`` × the time elapsed (bounding the lag of outliers and of a provider that
changed), and never go below the provider's minimum between two checks (WaveSpeed: 2 s;
a submit is not a check). Until something completes, tasks are also looked at early
(``cold_first``, then ``probe_ratio`` × the time elapsed, up to the first look), which
finds a provider far faster than its prior (an emulator). Without a prior
(``PollSchedule()``) the original cold start stays: ``cold_first`` × ``cold_growth`` per
poll until ``warm_after`` completions, then a moment fit of the log-durations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.providers.specs import ProviderSpec

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
# Life-table ages: bin j covers (EDGES[j], EDGES[j + 1]] (bin 0 from 0), 1 ms to ~6 days.
_T0, _RATIO, _BINS = 1e-3, 1.25, 90
_LOG_RATIO = math.log(_RATIO)
_EDGES = tuple([0.0] + [_T0 * _RATIO**j for j in range(1, _BINS)] + [math.inf])


def _bin(t: float) -> int:
    return 0 if t <= _T0 else min(_BINS - 1, int(math.log(t / _T0) / _LOG_RATIO))


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
    probe_ratio: float = 4.0
    fit_z: tuple[float, float] = (-1.25, 0.75)
    refit_every: int = 16


@dataclass(frozen=True, slots=True)
class PollPrior:
    """What a lane believes about its tasks' durations before any has completed.

    ``median_s`` and ``sigma``: a log-normal of task durations (``sigma`` is the spread of
    their logarithm); ``weight``: how many tasks the prior is worth; ``min_interval_s``:
    the provider's minimum between two checks of one task.
    """

    median_s: float = 15.0
    sigma: float = 0.5
    weight: float = 0.5
    min_interval_s: float = 0.0

    def __post_init__(self) -> None:
        positive = all(x > 0 for x in (self.median_s, self.sigma, self.weight))
        if not (positive and self.min_interval_s >= 0):
            raise ValueError(f"a poll prior needs positive values (min_interval_s >= 0): {self!r}")

    @classmethod
    def for_provider(cls, spec: ProviderSpec) -> PollPrior:
        """The prior a provider's spec documents."""
        s = spec
        return cls(s.typical_latency_s, s.latency_spread, min_interval_s=s.min_poll_interval_s)

    def survival(self, t: float) -> float:
        """The prior's probability that a task runs longer than ``t`` seconds."""
        z = (math.log(t) - math.log(self.median_s)) / self.sigma if t > 0 else -math.inf
        return 0.5 * math.erfc(z / _SQRT2)


class _LifeTable:
    """Completions and exposure per age bin, starting from the prior's pseudo-tasks.

    Counts are stored divided by ``_scale``: forgetting shrinks it, not every bin.
    """

    __slots__ = ("_events", "_exposure", "_scale")

    def __init__(self, prior: PollPrior) -> None:
        # Per bin: the prior's mass that ends in it, and ∫ S over it (trapezoids).
        self._events: list[float] = []
        self._exposure: list[float] = []
        for j in range(_BINS):
            lo, hi = _EDGES[j], min(_EDGES[j + 1], 1e7)
            ts = [lo + (hi - lo) * i / 4 for i in range(5)]
            ss = [prior.survival(t) for t in ts]
            exposure = sum((ts[i + 1] - ts[i]) * (ss[i] + ss[i + 1]) / 2 for i in range(4))
            self._events.append(prior.weight * (ss[0] - ss[-1]))
            self._exposure.append(prior.weight * exposure)
        self._scale = 1.0

    def expose(self, start: float, end: float) -> None:
        """A task was running from age ``start`` to ``end``."""
        start = max(0.0, start)
        j = _bin(start)
        while start < end:
            stop = min(end, _EDGES[j + 1])
            self._exposure[j] += (stop - start) / self._scale
            start, j = stop, j + 1

    def event(self, age: float) -> None:
        """A task completed at ``age``."""
        self._events[_bin(age)] += 1.0 / self._scale

    def forget(self, keep: float) -> None:
        """Weigh everything seen so far, prior included, by ``keep`` (< 1)."""
        self._scale *= keep
        if self._scale < 1e-150:  # renormalise before it underflows
            self._events = [x * self._scale for x in self._events]
            self._exposure = [x * self._scale for x in self._exposure]
            self._scale = 1.0

    def quantile(self, p: float) -> float:
        """The age by which a fraction ``p`` of tasks has completed (Nelson-Aalen)."""
        target, cumulative = -math.log1p(-p), 0.0
        for j in range(_BINS):
            exposure, lo, hi = self._exposure[j], _EDGES[j], _EDGES[j + 1]
            h = self._events[j] / exposure if exposure > 0 else 0.0
            if h > 0 and cumulative + h * (hi - lo) >= target:
                return lo + (target - cumulative) / h
            cumulative += h * (hi - lo) if hi < math.inf else 0.0
        return _EDGES[-2]


class PollSchedule:
    """Per-lane poll timing that learns from observed task durations.

    ``prior``: what the provider's tasks are expected to take (``for_provider`` builds
    it from a spec); ``None`` keeps the original cold start (see the module docstring).
    ``next_delay`` is also the lane's report that a task was seen running.
    """

    __slots__ = (
        "_first",
        "_fit_mean",
        "_fit_sigma",
        "_mean",
        "_n",
        "_pending",
        "_since_refit",
        "_table",
        "_var",
        "prior",
        "settings",
    )

    def __init__(
        self, settings: PollSettings | None = None, prior: PollPrior | None = None
    ) -> None:
        self.settings = settings or PollSettings()
        self.prior = prior
        self._table = _LifeTable(prior) if prior is not None else None
        self._n, self._since_refit = 0, 0
        self._mean, self._var = 0.0, 0.0  # of the log-durations
        self._pending: float | None = None
        self._fit_mean, self._fit_sigma, self._first = 0.0, 1.0, 1.0
        self._refit()

    @classmethod
    def for_provider(cls, spec: ProviderSpec, settings: PollSettings | None = None) -> PollSchedule:
        """A schedule that starts from ``spec``'s documented durations and limits."""
        return cls(settings, PollPrior.for_provider(spec))

    @property
    def warm(self) -> bool:
        """Whether poll times follow the fitted distribution (always, with a prior)."""
        return self._table is not None or self._n >= self.settings.warm_after

    @property
    def median(self) -> float:
        return math.exp(self._fit_mean)

    @property
    def sigma(self) -> float:
        return self._fit_sigma

    @property
    def floor(self) -> float:
        """The shortest interval between two checks of one task."""
        documented = self.prior.min_interval_s if self.prior is not None else 0.0
        return max(self.settings.min_interval, documented)

    def observe(self, duration: float) -> None:
        """Teach the schedule one task's duration (seconds from submit to completion)."""
        duration = max(duration, 1e-3)
        x = math.log(duration)
        self._n += 1
        # Welford for the first `memory` samples, then an exponential moving estimate.
        memory = self.settings.memory
        alpha = 1.0 / min(self._n, memory)
        delta = x - self._mean
        self._mean += alpha * delta
        self._var = (1 - alpha) * (self._var + alpha * delta * delta)
        if self._table is not None:
            self._settle()
            self._table.forget(1.0 - 1.0 / memory)
            self._table.event(duration)
            self._pending = duration  # its exposure since its last look comes next
        self._refit()

    def _settle(self) -> None:
        """A completion no poll reported (a streamed task, whose ``observe`` no
        ``next_delay`` follows): it was running from its submit."""
        if self._pending is not None and self._table is not None:
            self._table.expose(0.0, self._pending)
            self._pending = None

    def _refit(self) -> None:
        s = self.settings
        self._since_refit = 0
        if self._table is None:
            mean, sigma = self._mean, math.sqrt(self._var)
        else:
            (za, zb), table = s.fit_z, self._table
            low, high = (
                math.log(max(table.quantile(0.5 * math.erfc(-z / _SQRT2)), 1e-6)) for z in (za, zb)
            )
            sigma = (high - low) / (zb - za)
            mean = low - za * sigma
        self._fit_mean = mean
        self._fit_sigma = max(s.min_sigma, sigma)
        self._first = max(s.min_delay, math.exp(mean + s.first_z * self._fit_sigma))

    def hazard(self, t: float) -> float:
        """The fitted hazard rate at ``t`` seconds (density of finishing now, if running)."""
        sigma = self.sigma
        z = (math.log(max(t, 1e-6)) - self._fit_mean) / sigma
        pdf = math.exp(-0.5 * z * z) / (max(t, 1e-6) * sigma * _SQRT2PI)
        survival = 0.5 * math.erfc(z / _SQRT2)
        # Far past every observation the fit says nothing useful.
        return pdf / survival if survival >= 1e-12 else 0.0

    def first_delay(self) -> float:
        """Seconds from submit to the first poll."""
        s = self.settings
        if not self.warm:
            return s.cold_first
        if self._n == 0:
            return min(s.cold_first, self._first)
        return self._first

    def next_delay(self, elapsed: float, previous: float) -> float:
        """Seconds until the next poll of a task looked at ``elapsed`` seconds after its
        submit, ``previous`` seconds after the look before (the previous delay): it was
        running until then, or (the call right after ``observe``) until it completed."""
        table, start, done = self._table, elapsed - previous, self._pending
        if table is not None:
            self._since_refit += 1
            if done is not None and start <= done <= elapsed:
                # The lane's call after the poll that saw the task just observed done:
                # it ran from its last look until about ``done``.
                table.expose(start, done)
                self._pending, self._since_refit = None, self.settings.refit_every
            else:
                self._settle()
                table.expose(start, elapsed)
            if self._since_refit >= self.settings.refit_every:
                self._refit()
        s = self.settings
        if not self.warm:
            step = previous * s.cold_growth
        else:
            h = self.hazard(elapsed)
            cost = s.kappa * self.median
            step = math.sqrt(2.0 * cost / h) if h > 0 else s.max_interval
            step = min(step, s.max_ratio * elapsed)
            if self._table is not None:
                # Looked early: the next look is the fit's first, or while nothing has
                # completed yet, the next probe on the way to it.
                step = max(step, self._first - elapsed)
                if self._n == 0:
                    step = min(step, (s.probe_ratio - 1.0) * elapsed)
        return max(self.floor, min(s.max_interval, max(s.min_interval, step)))

    def __repr__(self) -> str:
        prior = "" if self.prior is None else f", prior={self.prior.median_s:g}s"
        return (
            f"PollSchedule(n={self._n}, median={self.median:.3f}s, sigma={self.sigma:.3f}{prior})"
        )
