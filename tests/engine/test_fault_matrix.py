"""The fault matrix: whole runs against the emulator injecting one fault, then all at once.

Every run must end on its own (``anyio.fail_after`` turns a hang into a failure), every
job must end completed or failed with a code (a job may stay pending only when its submit
outcome is unknown, and a rerun then finishes it), transient faults must be retried to
success, and nothing but verified, listed images may be left under ``images/``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.engine._outcome import RunOutcome
from pipeline.engine._runner import exit_code, run_batch
from pipeline.jobs import Batch, Budget
from tests.scheduler_support import (
    PROVIDERS,
    check_images_match_ledger,
    emulator_options,
    make_batch,
)

pytestmark = pytest.mark.anyio

RUN_LIMIT_S = 45.0
JOBS_PER_PROVIDER = 8
# The codes of the emulator's task failures and content rejections, both providers.
SERVER_FAILURE_CODES = frozenset(
    ("1403", "5000", "1200", "IMAGE_GENERATION_FAILED", "IMAGE_GENERATION_CONTENT_REJECTED")
)

# Faults the pipeline must absorb: every job completes (after one rerun for unknown outcomes).
TRANSIENT: dict[str, FaultProfile] = {
    "submit_5xx": FaultProfile(submit_5xx=0.3),
    "poll_5xx": FaultProfile(poll_5xx=0.3),
    "reset_after_create": FaultProfile(reset=0.2),
    "reset_before_create": FaultProfile(reset=0.2, reset_before_create=True),
    "slow": FaultProfile(slow_s=0.3, slow_rate=0.3),
    "malformed_json": FaultProfile(malformed_json=0.2),
    "rate_429_retry_after": FaultProfile(rate_429=0.2, retry_after=0.1),
    "rate_429_no_retry_after": FaultProfile(rate_429=0.1),
    "truncate_download": FaultProfile(truncate_download=0.3),
    "server_limits": FaultProfile(max_rps=8, max_concurrent=2, retry_after=0.2),
}


def _config(faults: FaultProfile, *, seed: int = 7, **kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        latency_s=0.05, latency_jitter=0.5, image_scale=0.0625, seed=seed, faults=faults, **kw
    )


def _prompts(n: int = JOBS_PER_PROVIDER) -> list[tuple[str, str]]:
    return [(p, f"{p} prompt {i}") for p in PROVIDERS for i in range(n)]


class TaskLog:
    """Every task the emulator created, by id: (provider, prompt, outcome).

    Sampled every 20 ms (of the run's clock) during the run, because tasks the pipeline
    deletes (timed out on WaveSpeed) vanish from the emulator's store; a task lives at
    least a poll interval.
    """

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.tasks: dict[str, tuple[str, str, str]] = {}

    def sample(self) -> None:
        state = self.server.state
        for task in state.store.tasks(None):
            view = state.task_view(task)
            self.tasks[view["id"]] = (view["provider"], view["input"]["prompt"], view["outcome"])

    async def watch(self, clock: VirtualClock) -> None:
        while True:
            self.sample()
            await clock.sleep(0.02)

    def outcomes(self) -> dict[str, set[str]]:
        """prompt -> the outcomes of every task created for it."""
        by_prompt: dict[str, set[str]] = {}
        for _, prompt, outcome in self.tasks.values():
            by_prompt.setdefault(prompt, set()).add(outcome)
        return by_prompt


async def _run(
    server: EmulatorServer, batch: Batch, clock: VirtualClock, log: TaskLog | None = None
) -> tuple[RunOutcome, dict[str, Any], int]:
    """One run in virtual time (bounded in real time), with the emulator's tasks recorded
    as it goes."""
    log = log or TaskLog(server)
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.watch, clock)
        with anyio.fail_after(RUN_LIMIT_S):
            outcome, doc, interrupted = await run_batch(
                batch, emulator_options(server, clock=clock)
            )
        tg.cancel_scope.cancel()
    log.sample()
    return outcome, doc, exit_code(outcome, interrupted)


def _check_end_states(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every job is completed, failed with a code, or pending with its unknown submit
    outcome noted; returns the pending ones."""
    pending = []
    for job in doc["jobs"]:
        if job["status"] == "completed":
            assert job["error"] is None, job
            assert job["images"], job
        elif job["status"] == "failed":
            assert job["error"], job
            assert job["error"]["code"], job
            assert job["images"] == [], job
        else:
            # Only an unknown submit outcome may leave a job open: no remote id, noted.
            assert job["remote_id"] is None, job
            assert job["error"]["code"] == "outcome_unknown", job
            pending.append(job)
    return pending


def _check_files(out: Path) -> dict[str, Any]:
    """Only complete, listed images under images/: no .part, truncated or stray file."""
    ledger = check_images_match_ledger(out)
    listed = {img["path"] for job in ledger["jobs"] for img in job["images"]}
    images = out / "images"
    on_disk = {f"images/{p.name}" for p in images.iterdir()} if images.exists() else set()
    assert on_disk == listed
    return ledger


def _codes(doc: dict[str, Any], provider: str | None = None) -> Counter[str]:
    return Counter(
        j["error"]["code"]
        for j in doc["jobs"]
        if j["status"] == "failed" and provider in (None, j["provider"])
    )


@pytest.mark.parametrize("fault", list(TRANSIENT), ids=list(TRANSIENT))
async def test_transient_fault_is_retried_to_success(
    tmp_path: Path, fault: str, clock: VirtualClock
) -> None:
    """One transient fault on both providers: every job completes (a rerun finishes the
    jobs whose submit outcome stayed unknown), and only verified images are on disk."""
    async with serve(_config(TRANSIENT[fault]), clock=clock) as server:
        batch = make_batch(tmp_path, _prompts(), n=2, max_concurrent=3)
        log = TaskLog(server)
        outcome, doc, _ = await _run(server, batch, clock, log)
        pending = _check_end_states(doc)
        assert outcome.failed == 0, _codes(doc)
        if pending:
            outcome, doc, _ = await _run(server, batch, clock, log)
        _check_end_states(doc)
        assert (outcome.completed, outcome.failed, outcome.pending) == (2 * JOBS_PER_PROVIDER, 0, 0)
        ledger = _check_files(tmp_path)
        assert ledger["finished"] is True
        stats = server.stats()
    # Never paid twice silently: a prompt with two tasks at the server is flagged.
    paid_twice = {p for p, n in Counter(t[1] for t in log.tasks.values()).items() if n > 1}
    flagged = {j["prompt"] for j in doc["jobs"] if "possible_duplicate" in j.get("flags", [])}
    assert paid_twice <= flagged
    # The fault really fired (slow and malformed replies leave no trace in the stats).
    if fault.startswith("reset"):
        assert stats.wavespeed.resets + stats.skills_video.resets > 0
    elif fault == "truncate_download":
        downloads = stats.wavespeed.downloads + stats.skills_video.downloads
        assert downloads > ledger["totals"]["images"]
    elif fault not in ("slow", "malformed_json"):
        assert stats.wavespeed.errors + stats.skills_video.errors > 0


async def test_failed_and_rejected_tasks_end_with_the_providers_codes(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Tasks the server fails or rejects end failed with the provider's own code; the rest
    complete; exit 1."""
    faults = FaultProfile(task_fail=0.3, content_reject=0.3)
    async with serve(_config(faults), clock=clock) as server:
        batch = make_batch(tmp_path, _prompts(10))
        log = TaskLog(server)
        outcome, doc, code = await _run(server, batch, clock, log)
        assert not _check_end_states(doc)
        _check_files(tmp_path)
    assert code == 1
    assert outcome.failed > 0
    assert outcome.completed > 0
    assert set(_codes(doc)) <= SERVER_FAILURE_CODES
    fates = log.outcomes()
    for job in doc["jobs"]:
        server_fates = fates.get(job["prompt"], set())
        if job["status"] == "completed":
            assert "completed" in server_fates
        elif job["error"]["code"] == "IMAGE_GENERATION_CONTENT_REJECTED":
            assert job["error"]["http_status"] == 422
            assert server_fates == set()  # rejected at submit: no task exists
        else:
            assert server_fates == {"failed"}, job


async def test_stuck_tasks_time_out_and_are_deleted_where_possible(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Stuck tasks end failed with 'timeout' at job_timeout_s; WaveSpeed ones are deleted at
    the provider (skills.video has no delete); every other job completes."""
    async with serve(_config(FaultProfile(stuck=0.3)), clock=clock) as server:
        batch = make_batch(tmp_path, _prompts(), job_timeout_s=1.0, max_concurrent=4)
        log = TaskLog(server)
        outcome, doc, code = await _run(server, batch, clock, log)
        assert not _check_end_states(doc)
        _check_files(tmp_path)
        store = server.state.store
        fates = log.outcomes()
        timed_out = [j for j in doc["jobs"] if j["status"] == "failed"]
        assert timed_out
        for job in doc["jobs"]:
            if fates[job["prompt"]] == {"stuck"}:
                assert job["status"] == "failed"
                assert job["error"]["code"] == "timeout"
                remote = store.get(job["remote_id"])
                # Deleted where the API allows it (WaveSpeed); left running elsewhere.
                assert (remote is None) == (job["provider"] == "wavespeed")
            else:
                assert job["status"] == "completed", job
    assert code == 1
    assert outcome.completed + outcome.failed == 2 * JOBS_PER_PROVIDER


async def test_key_rejected_mid_run_stops_only_that_lane(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """401 after a few requests: WaveSpeed stops at once with code 'auth' (no hammering),
    skills.video completes everything; exit 3."""
    after = 10
    faults = {"wavespeed": FaultProfile(auth_fail_after=after)}
    config = _config(FaultProfile(), provider_faults=faults)
    async with serve(config, clock=clock) as server:
        batch = make_batch(tmp_path, _prompts(12), max_concurrent=3)
        outcome, doc, code = await _run(server, batch, clock)
        assert not _check_end_states(doc)
        _check_files(tmp_path)
        stats = server.stats()
    assert code == 3
    assert set(outcome.lane_stops) == {"wavespeed"}
    assert set(_codes(doc, "wavespeed")) == {"auth"}
    assert not _codes(doc, "skills_video")
    assert doc["providers"]["skills_video"]["completed"] == 12
    # At most the requests already in flight when the first 401 came back.
    assert stats.wavespeed.requests <= after + 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_out_of_credit_stops_only_that_lane(
    tmp_path: Path, provider: str, clock: VirtualClock
) -> None:
    """402 after three tasks: that lane stops with 'insufficient_credits', its three tasks
    still complete, the other provider completes everything; exit 3."""
    config = _config(FaultProfile(), provider_faults={provider: FaultProfile(credits_after=3)})
    async with serve(config, clock=clock) as server:
        batch = make_batch(tmp_path, _prompts(), max_concurrent=2)
        outcome, doc, code = await _run(server, batch, clock)
        assert not _check_end_states(doc)
        _check_files(tmp_path)
        other = next(p for p in PROVIDERS if p != provider)
    assert code == 3
    assert set(outcome.lane_stops) == {provider}
    assert doc["providers"][provider]["completed"] == 3
    assert set(_codes(doc, provider)) == {"insufficient_credits"}
    assert doc["providers"][other]["completed"] == JOBS_PER_PROVIDER


ALL_FAULTS = FaultProfile(
    submit_5xx=0.1,
    poll_5xx=0.1,
    reset=0.05,
    slow_s=0.3,
    slow_rate=0.05,
    malformed_json=0.05,
    rate_429=0.05,
    retry_after=0.1,
    task_fail=0.1,
    content_reject=0.05,
    stuck=0.05,
    truncate_download=0.1,
    # No server-side concurrency limit here: the emulator keeps a stuck task's slot booked
    # forever (even once deleted), which would starve every later task of the lane.
    max_rps=40,
)


async def test_all_faults_together(tmp_path: Path, clock: VirtualClock) -> None:
    """Every fault at once on both providers: the run ends on its own, each job is completed
    or failed with a code, at least 85% of the jobs the server did not fail complete, no
    truncated file is on disk, and a rerun finishes any job left with an unknown outcome."""
    per_provider = 20
    async with serve(_config(ALL_FAULTS, seed=11), clock=clock) as server:
        batch = make_batch(
            tmp_path, _prompts(per_provider), n=2, rps=30, max_concurrent=3, job_timeout_s=2.0
        )
        log = TaskLog(server)
        outcome, doc, _ = await _run(server, batch, clock, log)
        pending = _check_end_states(doc)
        _check_files(tmp_path)
        server_failed = set()
        for job in doc["jobs"]:
            # The server's verdict on the task the job ended up with (an earlier task whose
            # submit reply was lost may have fared otherwise), or its 422 at submit.
            task = log.tasks.get(job["remote_id"] or "")
            rejected = job["status"] == "failed" and job["error"].get("http_status") == 422
            if (task is not None and task[2] != "completed") or (task is None and rejected):
                server_failed.add(job["id"])
        eligible = [j for j in doc["jobs"] if j["id"] not in server_failed]
        completed = [j for j in eligible if j["status"] == "completed"]
        stats = server.stats()
        print(
            f"\nall faults: jobs={len(doc['jobs'])} server_failed={len(server_failed)} "
            f"completed={outcome.completed} failed={dict(_codes(doc))} pending={len(pending)} "
            f"429={stats.wavespeed.rate_limited + stats.skills_video.rate_limited} "
            f"errors={stats.wavespeed.errors + stats.skills_video.errors} "
            f"resets={stats.wavespeed.resets + stats.skills_video.resets} "
            f"requests={stats.wavespeed.requests + stats.skills_video.requests} "
            f"downloads={stats.wavespeed.downloads + stats.skills_video.downloads}"
        )
        assert len(completed) >= 0.85 * len(eligible)
        # Transient faults never show as a job's final error: only the server's own verdicts
        # (and the deadline of stuck tasks) do.
        assert set(_codes(doc)) <= SERVER_FAILURE_CODES | {"timeout"}
        # A rerun leaves nothing open.
        outcome, doc, _ = await _run(server, batch, clock, log)
        assert not _check_end_states(doc)
        assert outcome.pending == 0
        _check_files(tmp_path)


async def test_slow_submit_does_not_eat_the_tasks_deadline(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """Every request takes 1.5 s: the task still gets its full job_timeout_s from creation,
    so it is not timed out (and deleted) right after it was paid for."""
    slow = FaultProfile(slow_s=1.5, slow_rate=1.0)
    async with serve(
        _config(FaultProfile(), provider_faults={"wavespeed": slow}), clock=clock
    ) as server:
        batch = make_batch(tmp_path, [("wavespeed", "a"), ("wavespeed", "b")], job_timeout_s=2.5)
        outcome, doc, code = await _run(server, batch, clock)
        _check_files(tmp_path)
    assert (outcome.completed, outcome.failed) == (2, 0), _codes(doc)
    assert code == 0


async def test_refused_submits_give_their_budget_back(tmp_path: Path, clock: VirtualClock) -> None:
    """Submits rejected for good (422) release their reservation: the budget still admits
    the jobs it can pay for."""
    prompts = [("skills_video", f"bad {i} [[reject]]") for i in range(3)]
    prompts += [("skills_video", f"good {i}") for i in range(3)]
    async with serve(_config(FaultProfile()), clock=clock) as server:
        batch = make_batch(tmp_path, prompts, max_concurrent=1, budget=Budget(max_credits=60))
        outcome, doc, code = await _run(server, batch, clock)
        _check_files(tmp_path)
    assert (outcome.completed, outcome.failed, outcome.pending) == (3, 3, 0)
    assert set(_codes(doc)) == {"IMAGE_GENERATION_CONTENT_REJECTED"}
    assert doc["totals"]["credits"] == 60
    assert code == 1
