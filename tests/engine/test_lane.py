"""The lane's error classes in virtual time: poll retries, lane stops, bounded submits."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from pipeline.clock import VirtualClock
from pipeline.engine._lane import MAX_PAUSE_S, MAX_POLL_FAILURES, Lane, LaneStopped
from pipeline.engine._polling import PollSchedule, PollSettings
from pipeline.errors import AuthError, InsufficientCredits, ProviderError, RateLimited
from pipeline.jobs import Job, JobParams, ProviderSettings
from pipeline.providers.base import ProviderAdapter, TaskState, TaskStatus
from pipeline.providers.specs import WAVESPEED, Cost, ProviderSpec

pytestmark = pytest.mark.anyio

JOB = Job(id="j", prompt_id="j", provider="wavespeed", prompt="p", params=JobParams())
QUEUED = TaskStatus(remote_id="t1", state=TaskState.QUEUED)
DONE = TaskStatus(remote_id="t1", state=TaskState.COMPLETED)

Step = TaskStatus | ProviderError


def _not_found() -> ProviderError:
    return ProviderError("no such task", provider="wavespeed", http_status=404, retryable=False)


class ScriptedAdapter(ProviderAdapter):
    """A provider adapter (not an HTTP mock) that answers from scripts, then repeats the
    last answer (the protocol's defaults for listing and cancelling)."""

    spec: ProviderSpec = WAVESPEED

    def __init__(self, *, polls: Iterable[Step] = (), submits: Iterable[Step] = ()) -> None:
        self.polls = list(polls)
        self.submits = list(submits)
        self.poll_calls = 0
        self.submit_calls = 0

    @staticmethod
    def _next(script: list[Step]) -> TaskStatus:
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, ProviderError):
            raise step
        return step

    async def submit(self, job: Job) -> TaskStatus:
        self.submit_calls += 1
        return self._next(self.submits)

    async def poll(self, remote_id: str) -> TaskStatus:
        self.poll_calls += 1
        return self._next(self.polls)

    def cost(self, job: Job, status: TaskStatus) -> Cost:
        return Cost(usd=0.0, credits=None, basis="price_table")

    async def aclose(self) -> None:
        return None


def _lane(adapter: ScriptedAdapter, clock: VirtualClock, *, job_timeout_s: float = 600) -> Lane:
    settings = ProviderSettings(
        requests_per_second=100, max_concurrent=2, job_timeout_s=job_timeout_s
    )
    # A fixed cold schedule (first look at 0.5 s, then x1.5), whatever the defaults become.
    schedule = PollSchedule(PollSettings(cold_first=0.5, cold_growth=1.5))
    return Lane(adapter, settings, clock=clock, schedule=schedule)


async def test_final_poll_errors_are_retried_a_few_times() -> None:
    """A 404 right after a submit is polled again; the task then completes."""
    adapter = ScriptedAdapter(polls=[_not_found(), _not_found(), DONE])
    async with VirtualClock().running() as clock:
        final = await _lane(adapter, clock).wait(JOB, QUEUED, clock.now())
    assert final.state is TaskState.COMPLETED
    assert adapter.poll_calls == 3


async def test_a_lasting_final_poll_error_fails_the_job() -> None:
    """A task that stays unknown fails after MAX_POLL_FAILURES polls, not at the deadline."""
    adapter = ScriptedAdapter(polls=[_not_found()])
    async with VirtualClock().running() as clock:
        with pytest.raises(ProviderError) as info:
            await _lane(adapter, clock).wait(JOB, QUEUED, clock.now())
    assert info.value.http_status == 404
    assert adapter.poll_calls == MAX_POLL_FAILURES


async def test_rate_limited_polls_pause_and_carry_on() -> None:
    """429s on polls pause the lane and are polled through to completion."""
    limited = RateLimited("slow down", provider="wavespeed", http_status=429, retry_after=2.0)
    adapter = ScriptedAdapter(polls=[limited, limited, DONE])
    async with VirtualClock().running() as clock:
        lane = _lane(adapter, clock)
        final = await lane.wait(JOB, QUEUED, clock.now())
    assert final.state is TaskState.COMPLETED
    assert lane.stats().rate_limited == 2
    assert lane.stopped is None


async def test_rejected_key_stops_every_request() -> None:
    """A 401 on a poll stops the lane: no poll, submit or delete is sent after it."""
    adapter = ScriptedAdapter(polls=[AuthError("bad key", provider="wavespeed", http_status=401)])
    async with VirtualClock().running() as clock:
        lane = _lane(adapter, clock)
        with pytest.raises(LaneStopped):
            await lane.wait(JOB, QUEUED, clock.now())
        assert isinstance(lane.refuses(submit=False), AuthError)
        with pytest.raises(LaneStopped):
            await lane.wait(JOB, QUEUED, clock.now())
    assert adapter.poll_calls == 1


async def test_out_of_credit_stops_submits_but_not_polls() -> None:
    """After a 402 no submit is sent, but a task already paid for is still polled."""
    broke = InsufficientCredits("no money", provider="wavespeed", http_status=402)
    adapter = ScriptedAdapter(submits=[broke], polls=[DONE])
    async with VirtualClock().running() as clock:
        lane = _lane(adapter, clock)
        with pytest.raises(LaneStopped):
            await lane.submit(JOB)
        with pytest.raises(LaneStopped):
            await lane.submit(JOB)
        assert lane.refuses(submit=False) is None
        final = await lane.wait(JOB, QUEUED, clock.now())
    assert adapter.submit_calls == 1
    assert final.state is TaskState.COMPLETED


async def test_endless_429s_on_submit_stop_at_the_deadline() -> None:
    """A provider refusing every submit: the lane gives up at the job's submit deadline."""
    limited = RateLimited("busy", provider="wavespeed", http_status=429, retry_after=1.0)
    adapter = ScriptedAdapter(submits=[limited])
    async with VirtualClock().running() as clock:
        lane = _lane(adapter, clock)
        with pytest.raises(RateLimited):
            await lane.submit(JOB, deadline=clock.now() + 5.0)
        ended = clock.now()
    assert 5.0 <= ended <= 6.0
    assert 5 <= adapter.submit_calls <= 7


async def test_hostile_retry_after_is_capped() -> None:
    """Retry-After of a year pauses the lane for at most MAX_PAUSE_S (and the job timeout)."""
    year = RateLimited("later", provider="wavespeed", http_status=429, retry_after=3.2e7)
    adapter = ScriptedAdapter(submits=[year, QUEUED])
    async with VirtualClock().running() as clock:
        status = await _lane(adapter, clock).submit(JOB)
        assert status.remote_id == "t1"
        assert clock.now() <= MAX_PAUSE_S + 1
    async with VirtualClock().running() as clock:
        adapter = ScriptedAdapter(submits=[year, QUEUED])
        await _lane(adapter, clock, job_timeout_s=5).submit(JOB)
        assert clock.now() <= 6


def _server_error() -> ProviderError:
    return ProviderError("oops", provider="wavespeed", http_status=503, retryable=True)


async def test_failed_polls_do_not_stretch_the_interval() -> None:
    """After a failed poll the next look comes after the same interval (cold start: 0.5 s),
    not a longer one."""
    adapter = ScriptedAdapter(polls=[_server_error(), _server_error(), _server_error(), DONE])
    async with VirtualClock().running() as clock:
        final = await _lane(adapter, clock).wait(JOB, QUEUED, clock.now())
        assert clock.now() == pytest.approx(2.0)
    assert final.state is TaskState.COMPLETED


async def test_last_look_comes_just_before_the_deadline() -> None:
    """A poll that would fall after the deadline is moved just before it, so a task that
    finished in time is not given up on."""
    running = TaskStatus(remote_id="t1", state=TaskState.RUNNING)
    adapter = ScriptedAdapter(polls=[running, running, DONE])
    async with VirtualClock().running() as clock:
        # Cold schedule: looks at 0.5 and 1.25 s; the next (2.375 s) moves to 1.8 s.
        final = await _lane(adapter, clock).wait(JOB, QUEUED, 0.0, deadline=2.0)
        assert clock.now() == pytest.approx(1.8)
    assert final.state is TaskState.COMPLETED
