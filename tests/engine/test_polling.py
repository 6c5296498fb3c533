"""The poll schedule: cold start, learning, and proportional back-off."""

from __future__ import annotations

import math
import random

import pytest

from pipeline.engine._polling import PollSchedule, PollSettings


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
