"""Figure 4: polling efficiency, simulated on a virtual timeline.

The emulator draws task latencies uniformly (``latency_s * (1 ± latency_jitter)``), so it
cannot produce the service's log-normal shape; the poll schedule is pure, so this module
drives :class:`pipeline.engine._polling.PollSchedule` directly in virtual time instead, with
``cap`` tasks in flight (a provider's concurrency limit): a slot frees when the poller
*sees* a task end, and the next task starts at once. The poll loop mirrors
``pipeline.engine._lane.Lane.wait``: first poll after ``first_delay()``, then ``next_delay(elapsed,
previous)`` (also after the poll that sees the task done); a completion teaches the
schedule the midpoint of the last two looks.

Durations are log-normal with median 15 s and p95 45 s, in real seconds: scaling time
down (and the schedule's constants alike) changes nothing in a virtual timeline, so no
scaling is applied. Request rate limits are not modelled (each poll is instantaneous).
The comparisons are fixed polling every ``FIXED_S`` (the official SDK's default) and the
schedule as it was before it had a prior (``PollSchedule()``: cold start, then a moment
fit). The schedule measured starts from the prior a provider spec documents by default
(``SKILLS_VIDEO``: median 15 s, spread 0.5, no minimum between checks), which is also
how a lane starts.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

from benchmarks.results import Figure, at_most, info
from pipeline.engine._polling import PollSchedule, PollSettings
from pipeline.providers.specs import SKILLS_VIDEO

MEDIAN_S = 15.0
P95_S = 45.0
SIGMA = math.log(P95_S / MEDIAN_S) / 1.6448536269514722  # z of the 95th percentile
FIXED_S = 1.0
TARGET_LAG = 0.05  # of the mean task duration
TARGET_POLLS = 2 / 3  # of fixed polling's
WARMUP = 1000


@dataclass(frozen=True, slots=True)
class Outcome:
    """One schedule's result over the same tasks."""

    name: str
    polls_per_job: float
    warmup_polls_per_job: float  # over the first WARMUP tasks (the schedule still learns)
    mean_lag_s: float
    mean_duration_s: float
    throughput: float  # jobs per second with ``cap`` in flight
    ideal: float  # cap / mean duration

    @property
    def lag_share(self) -> float:
        return self.mean_lag_s / self.mean_duration_s


class Fixed:
    """Fixed-interval polling in the schedule's shape (``first_s``: the first look; the
    official SDK looks right after its submit, then every second)."""

    def __init__(self, every_s: float = FIXED_S, first_s: float | None = None) -> None:
        self.every_s = every_s
        self.first_s = every_s if first_s is None else first_s

    def first_delay(self) -> float:
        return self.first_s

    def next_delay(self, elapsed: float, previous: float) -> float:
        return self.every_s

    def observe(self, duration: float) -> None:
        pass


def simulate(
    name: str, schedule: PollSchedule | Fixed, durations: list[float], cap: int
) -> Outcome:
    """Run every task through ``schedule`` with at most ``cap`` in flight."""
    # Heap of (next poll time, task index); per task: start, delay, last look while running.
    pending = iter(range(len(durations)))
    start: dict[int, float] = {}
    delay: dict[int, float] = {}
    last_running: dict[int, float] = {}
    heap: list[tuple[float, int]] = []
    polls = [0] * len(durations)
    lags: list[float] = []
    end = 0.0

    def launch(at: float) -> None:
        i = next(pending, None)
        if i is None:
            return
        start[i], last_running[i] = at, at
        delay[i] = schedule.first_delay()
        heapq.heappush(heap, (at + delay[i], i))

    for _ in range(cap):
        launch(0.0)
    while heap:
        now, i = heapq.heappop(heap)
        polls[i] += 1
        elapsed = now - start[i]
        if elapsed >= durations[i]:
            schedule.observe((last_running[i] + now) / 2 - start[i])
            schedule.next_delay(elapsed, delay[i])  # as the lane does after the last poll
            lags.append(elapsed - durations[i])
            end = max(end, now)
            launch(now)
            continue
        last_running[i] = now
        delay[i] = schedule.next_delay(elapsed, delay[i])
        heapq.heappush(heap, (now + delay[i], i))
    mean = statistics.fmean(durations)
    return Outcome(
        name=name,
        polls_per_job=statistics.fmean(polls),
        warmup_polls_per_job=statistics.fmean(polls[:WARMUP]),
        mean_lag_s=statistics.fmean(lags),
        mean_duration_s=mean,
        throughput=len(durations) / end,
        ideal=cap / mean,
    )


def measure(tasks: int, cap: int, log: Callable[[str], None], seed: int = 11) -> list[Figure]:
    """Figure 4: polls per job and detection lag, the schedule vs fixed 1 s polling and vs
    the schedule before it had a prior."""
    rng = random.Random(seed)
    durations = [rng.lognormvariate(math.log(MEDIAN_S), SIGMA) for _ in range(tasks)]
    hazard = simulate("prior schedule", PollSchedule.for_provider(SKILLS_VIDEO), durations, cap)
    before = simulate("no prior (before)", PollSchedule(), durations, cap)
    fixed = simulate(f"fixed {FIXED_S:g} s", Fixed(), durations, cap)
    outcomes = (hazard, before, fixed)

    def cost(o: Outcome) -> float:
        # What the schedule minimises: lag plus ``kappa`` x the median per poll.
        return o.mean_lag_s + PollSettings().kappa * MEDIAN_S * o.polls_per_job

    log(
        f"  {tasks:,} log-normal tasks (median {MEDIAN_S:g} s, p95 {P95_S:g} s, mean "
        f"{hazard.mean_duration_s:.2f} s), {cap} in flight"
    )
    head = ("schedule", "polls/job", f"first {WARMUP}", "lag s", "lag %", "jobs/s", "of ideal")
    log("  {:18} {:>9} {:>10} {:>7} {:>6} {:>7} {:>8}".format(*head))
    for o in outcomes:
        log(
            f"  {o.name:18} {o.polls_per_job:9.2f} {o.warmup_polls_per_job:10.2f} "
            f"{o.mean_lag_s:7.3f} "
            f"{100 * o.lag_share:5.2f}% {o.throughput:7.3f} {o.throughput / o.ideal:8.1%}"
        )
    details = {
        "tasks": tasks,
        "cap": cap,
        "sigma": SIGMA,
        "outcomes": [asdict(o) | {"lag_share": o.lag_share} for o in outcomes],
    }
    return [
        at_most(
            "poll_lag_share",
            "4. detection lag / mean duration",
            100 * hazard.lag_share,
            "%",
            100 * TARGET_LAG,
            details=details,
        ),
        at_most(
            "poll_ratio",
            "4. polls vs fixed 1 s polling",
            hazard.polls_per_job / fixed.polls_per_job,
            "x",
            TARGET_POLLS,
        ),
        at_most(
            "poll_ratio_before",
            "4. polls vs the schedule before its prior",
            hazard.polls_per_job / before.polls_per_job,
            "x",
            1.0,
        ),
        at_most(
            "poll_cost_before",
            "4. lag + c x polls vs the schedule before its prior",
            cost(hazard) / cost(before),
            "x",
            1.0,
        ),
        info(
            "poll_lag_before",
            "4. lag vs the schedule before its prior",
            hazard.mean_lag_s / before.mean_lag_s,
            "x",
        ),
        info(
            "poll_ratio_warmup",
            f"4. same, over the first {WARMUP:,} tasks",
            hazard.warmup_polls_per_job / fixed.warmup_polls_per_job,
            "x",
        ),
        info(
            "poll_throughput",
            f"4. throughput / ideal, {cap} in flight",
            100 * hazard.throughput / hazard.ideal,
            "%",
        ),
        info(
            "poll_throughput_fixed",
            "4. same, fixed 1 s polling",
            100 * fixed.throughput / fixed.ideal,
            "%",
        ),
    ]
