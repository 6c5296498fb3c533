"""The poll schedule: priors, cold start, learning, and proportional back-off.

Everything runs in virtual time: the schedule only computes delays, and ``_lane_loop``
replays ``Lane.wait``'s calls (``first_delay``, then ``next_delay`` after every poll,
``observe`` of the midpoint of the last two looks when a task is seen done).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine._polling import PollPrior, PollSchedule, PollSettings
from pipeline.providers.specs import SKILLS_VIDEO, WAVESPEED


def _simulate(schedule: PollSchedule, duration: float) -> tuple[int, float]:
    """Polls spent and detection lag for one task of ``duration`` seconds."""
    t = schedule.first_delay()
    delay = t
    polls = 1
    while t < duration:
        delay = schedule.next_delay(t, delay)
        t += delay
        polls += 1
    return polls, t - duration


def test_cold_start_polls_early_and_grows() -> None:
    """Before anything completed: first poll at cold_first, then x1.5 steps."""
    s = PollSchedule(PollSettings(cold_first=0.5, cold_growth=1.5, max_interval=10))
    assert s.first_delay() == 0.5
    assert s.next_delay(0.5, 0.5) == pytest.approx(0.75)
    assert s.next_delay(10, 8) == 10  # capped


def test_first_poll_moves_to_the_learned_distribution() -> None:
    """After observing ~10 s tasks, the first poll lands a little before 10 s."""
    # Tight tasks, and a spread floor that lets the fit be as tight as they are.
    s = PollSchedule(PollSettings(min_sigma=0.1))
    for d in (9.0, 10.0, 11.0, 10.0) * 5:
        s.observe(d)
    assert s.warm
    assert 8.0 < s.first_delay() < 10.0


def test_warm_up_does_not_trust_the_first_few_completions() -> None:
    """Defaults: 3 quick completions leave it cold; a tight fit is widened to min_sigma."""
    s = PollSchedule()
    for d in (1.0, 1.1, 1.2):
        s.observe(d)
    assert not s.warm
    assert s.first_delay() == s.settings.cold_first
    tight = PollSchedule()
    for _ in range(tight.settings.warm_after):
        tight.observe(10.0)
    assert tight.warm
    assert tight.sigma == tight.settings.min_sigma
    # With the 0.3 floor the first poll comes well before the median, not just before it.
    assert 4.0 < tight.first_delay() < 8.0


def test_polls_densest_where_tasks_finish() -> None:
    """Warm on ~10 s tasks: intervals are shortest near 10 s, longer before and after."""
    s = PollSchedule(PollSettings(min_sigma=0.1))
    for d in (8.0, 9.0, 10.0, 11.0, 12.0, 10.0) * 4:
        s.observe(d)
    assert s.warm
    near = s.next_delay(10.0, 1.0)
    assert near < s.next_delay(6.0, 1.0)
    assert near < s.next_delay(40.0, 1.0)


def test_outliers_are_bounded_by_elapsed_time() -> None:
    """Far past every observation, the interval is at most max_ratio x elapsed (or the cap)."""
    s = PollSchedule(PollSettings(max_ratio=0.25, max_interval=10))
    for _ in range(s.settings.warm_after):
        s.observe(1.0)
    assert s.warm
    assert s.next_delay(8.0, 1.0) <= 2.0
    assert s.next_delay(500.0, 1.0) == 10


def test_beats_fixed_one_second_polling_on_realistic_latencies() -> None:
    """Log-normal tasks (median 15 s, p95 45 s): fewer polls than 1 s polling, lag <= 5%."""
    rng = random.Random(7)
    sigma = math.log(3) / 1.645
    durations = [15 * math.exp(rng.gauss(0, sigma)) for _ in range(400)]
    s = PollSchedule()
    for d in durations[:50]:
        s.observe(d)
    results = [_simulate(s, d) for d in durations[50:]]
    mean_polls = sum(p for p, _ in results) / len(results)
    mean_lag = sum(lag for _, lag in results) / len(results)
    mean_duration = sum(durations[50:]) / len(durations[50:])
    fixed_polls = sum(math.ceil(d) for d in durations[50:]) / len(durations[50:])
    assert mean_lag <= 0.05 * mean_duration
    assert mean_polls <= 2 / 3 * fixed_polls


def _lane_loop(
    schedule: PollSchedule, durations: list[float], cap: int, *, stop_after: int | None = None
) -> list[list[float]]:
    """Each task's poll times (seconds after its submit), ``cap`` tasks in flight, a task
    starting when the previous one is seen done; stops after ``stop_after`` completions."""
    polls: list[list[float]] = [[] for _ in durations]
    delay = [0.0] * len(durations)
    start = [0.0] * len(durations)
    heap: list[tuple[float, int]] = []
    queued = iter(range(len(durations)))
    done = 0

    def launch(at: float) -> None:
        i = next(queued, None)
        if i is not None:
            start[i], delay[i] = at, schedule.first_delay()
            heapq.heappush(heap, (at + delay[i], i))

    for _ in range(cap):
        launch(0.0)
    while heap and (stop_after is None or done < stop_after):
        now, i = heapq.heappop(heap)
        elapsed = now - start[i]
        last = polls[i][-1] if polls[i] else 0.0
        polls[i].append(elapsed)
        finished = elapsed >= durations[i]
        if finished:
            schedule.observe((last + elapsed) / 2)
            done += 1
        delay[i] = schedule.next_delay(elapsed, delay[i])
        if finished:
            launch(now)
        else:
            heapq.heappush(heap, (now + delay[i], i))
    return polls


def test_a_provider_prior_comes_from_its_spec() -> None:
    """WaveSpeed's prior: its typical duration and 2 s between checks; skills.video: none."""
    ws = PollPrior.for_provider(WAVESPEED)
    assert ws.median_s == WAVESPEED.typical_latency_s
    assert ws.sigma == WAVESPEED.latency_spread
    assert ws.min_interval_s == 2.0
    assert PollPrior.for_provider(SKILLS_VIDEO).min_interval_s == 0.0
    assert PollSchedule.for_provider(WAVESPEED).floor == 2.0
    with pytest.raises(ValueError, match="positive"):
        PollPrior(median_s=0.0)


def test_cold_lane_probes_then_looks_at_the_prior_quantile() -> None:
    """Nothing learned (WaveSpeed): probes at 0.1 s and 2 s later, then the first look at
    the prior's ~4 % quantile."""
    s = PollSchedule.for_provider(WAVESPEED)
    assert s.first_delay() == s.settings.cold_first
    assert s.next_delay(0.1, 0.1) == 2.0  # x4 would be 0.4 s: the 2 s floor wins
    expected = WAVESPEED.typical_latency_s * math.exp(-1.75 * WAVESPEED.latency_spread)
    first_look = 2.1 + s.next_delay(2.1, 2.0)
    assert first_look == pytest.approx(expected, rel=0.05)
    # From there on, the prior's hazard, never below WaveSpeed's 2 s.
    step = s.next_delay(first_look, first_look - 0.1)
    assert 2.0 <= step <= 0.25 * first_look + 2.0


def test_cold_lane_without_a_floor_probes_on_the_way_to_the_first_look() -> None:
    """No documented minimum: probes at 0.1, 0.4, 1.6 s (x4), then the prior's first look."""
    s = PollSchedule(prior=PollPrior(median_s=15.0, sigma=0.5))
    assert s.first_delay() == pytest.approx(0.1)
    assert s.next_delay(0.1, 0.1) == pytest.approx(0.3)
    assert s.next_delay(0.4, 0.3) == pytest.approx(1.2)
    assert 1.6 + s.next_delay(1.6, 1.2) == pytest.approx(15 * math.exp(-0.875), rel=0.05)


def test_cold_lane_finds_a_provider_far_faster_than_its_prior() -> None:
    """Tasks of 2 ms (an emulator): the probe sees them, and the first poll moves to them."""
    s = PollSchedule.for_provider(WAVESPEED)
    polls = _lane_loop(s, [0.002] * 40, 8)
    assert all(len(p) == 1 for p in polls)
    assert s.first_delay() < 0.01


@settings(max_examples=60, deadline=None)
@given(
    durations=st.lists(st.floats(0.001, 300.0), min_size=1, max_size=40),
    cap=st.integers(1, 12),
)
def test_wavespeed_is_never_checked_twice_within_2_s(durations: list[float], cap: int) -> None:
    """Whatever the tasks take, two polls of one WaveSpeed task are >= 2 s apart."""
    for times in _lane_loop(PollSchedule.for_provider(WAVESPEED), durations, cap):
        assert all(b - a >= 2.0 - 1e-9 for a, b in itertools.pairwise(times))


@settings(max_examples=60, deadline=None)
@given(
    observed=st.lists(st.floats(1e-4, 1e5), max_size=30),
    elapsed=st.floats(0.0, 1e5),
    previous=st.floats(0.0, 1e3),
    median=st.floats(0.01, 1000.0),
)
def test_intervals_stay_bounded(
    observed: list[float], elapsed: float, previous: float, median: float
) -> None:
    """Any prior, any history: a delay is positive and within the floor and the cap."""
    s = PollSchedule(prior=PollPrior(median_s=median, sigma=0.5, min_interval_s=2.0))
    for d in observed:
        s.observe(d)
    assert s.first_delay() > 0
    step = s.next_delay(elapsed, previous)
    assert 2.0 <= step <= max(2.0, s.settings.max_interval)


def test_learns_a_handful_of_completions_far_from_the_prior() -> None:
    """Prior 15 s, tasks of 4 s or of 60 s: after 5 completions the fit follows them."""
    for duration in (4.0, 60.0):
        s = PollSchedule(prior=PollPrior(median_s=15.0, sigma=0.5))
        _lane_loop(s, [duration] * 5, 1)
        assert s.median == pytest.approx(duration, rel=0.3)
        assert s.first_delay() < duration


def test_learned_polls_cluster_where_tasks_finish() -> None:
    """After 30 tasks of ~10 s, a new one is first looked at before 10 s (as early as the
    ``min_sigma`` floor on the spread says), and polled more often near 10 s than before."""
    s = PollSchedule.for_provider(SKILLS_VIDEO)
    rng = random.Random(3)
    _lane_loop(s, [rng.uniform(9.0, 11.0) for _ in range(30)], 4)
    assert s.median == pytest.approx(10.0, rel=0.1)
    assert 5.0 < s.first_delay() < 9.0
    assert s.next_delay(10.0, 1.0) < s.next_delay(6.0, 1.0)


def test_first_completions_of_a_wide_batch_do_not_drag_the_fit_down() -> None:
    """100 started at once: the 10 shortest finish first; tasks still running count as
    survivors, so the fit stays near the durations, not at the fastest ones."""
    rng = random.Random(5)
    durations = [rng.lognormvariate(math.log(15.0), 0.67) for _ in range(100)]
    s = PollSchedule.for_provider(SKILLS_VIDEO)
    _lane_loop(s, durations, 100, stop_after=10)
    shortest = sorted(durations)[:10]
    naive = math.exp(sum(math.log(d) for d in shortest) / len(shortest))
    assert naive < 8.0
    assert s.median > 11.0


def test_slow_outliers_are_bounded_by_elapsed_time() -> None:
    """Learned on ~10 s tasks, a task still running at 100 s or 1000 s is looked at again
    within max_ratio x elapsed (and max_interval)."""
    s = PollSchedule.for_provider(SKILLS_VIDEO)
    _lane_loop(s, [10.0] * 20, 4)
    for elapsed in (40.0, 100.0, 1000.0):
        step = s.next_delay(elapsed, 5.0)
        assert step <= min(s.settings.max_interval, s.settings.max_ratio * elapsed)
    polls = _lane_loop(s, [300.0], 1)[0]
    assert polls[-1] - 300.0 <= s.settings.max_interval


def test_small_batch_beats_one_second_polling_from_the_first_job() -> None:
    """48 WaveSpeed jobs of 5-20 s, 12 in flight, cold: at most 2/3 of 1 s polling's polls
    (one right after the submit, then every second)."""
    rng = random.Random(7)
    durations = [rng.uniform(5.0, 20.0) for _ in range(48)]
    polls = _lane_loop(PollSchedule.for_provider(WAVESPEED), durations, 12)
    ours = sum(len(p) for p in polls)
    sdk = sum(math.ceil(d) + 1 for d in durations)
    assert ours <= 2 / 3 * sdk
