"""A large new batch: its first jobs are sent while the rest are stored (engine._intake).

The sizes are the module's own, made small (a batch of 40 counts as large here); the
runs go through ``run_batch`` against the emulator and a real sqlite state (on a real
small file system, a tmpfs, for the full disk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorServer, serve
from pipeline.engine import _intake, exit_code
from pipeline.engine._runner import run_batch
from pipeline.jobs import Job
from pipeline.ledger import read_status
from pipeline.store import state_location
from pipeline.store._sqlite import SqliteStore
from tests.outputs.test_storage_failures import EMULATOR, _grow, small_disk
from tests.scheduler_support import (
    check_images_match_ledger,
    emulator_options,
    make_batch,
    run_until_sigint,
)

pytestmark = pytest.mark.anyio

JOBS = 40
__all__ = ["small_disk"]  # a fixture of the storage-failure tests: a 12 MiB tmpfs


@pytest.fixture(autouse=True)
def _small_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_intake, "MIN_JOBS", 20)
    monkeypatch.setattr(_intake, "FIRST", 6)
    monkeypatch.setattr(_intake, "CHUNK", 5)


def _prompts(*providers: str) -> list[tuple[str, str]]:
    return [(providers[i % len(providers)], f"prompt {i}") for i in range(JOBS)]


class _Watch:
    """What the state was asked to do, in order: the parts stored, each job's intent
    with how many jobs had rows at that moment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold_from: int | None = None):
        self.parts: list[tuple[int, int]] = []
        self.intents: list[tuple[str, int]] = []
        self.stored = 0
        self.sent = anyio.Event()  # four intents written
        insert, intent = SqliteStore.insert_new, SqliteStore.mark_intent
        watch = self

        async def insert_new(
            self: SqliteStore, jobs: Sequence[Job], models: Mapping[str, str], a: int, b: int
        ) -> bool:
            if hold_from is not None and a >= hold_from:
                await anyio.sleep_forever()  # the rest waits: the run is stopped meanwhile
            done = await insert(self, jobs, models, a, b)
            if done:
                watch.parts.append((a, min(b, len(jobs))))
                watch.stored = min(b, len(jobs))
            return done

        async def mark_intent(self: SqliteStore, job_id: str, at: str | None = None) -> bool:
            watch.intents.append((job_id, watch.stored))
            if len(watch.intents) >= 4:
                watch.sent.set()
            return await intent(self, job_id, at)

        monkeypatch.setattr(SqliteStore, "insert_new", insert_new)
        monkeypatch.setattr(SqliteStore, "mark_intent", mark_intent)


async def test_a_large_new_batch_is_sent_while_it_is_stored(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first jobs go out once the first part is stored, before the last part is;
    every job's intent comes after its row is committed; the run ends with every job
    completed and the jobs noted as synced (a rerun stores and sends nothing)."""
    watch = _Watch(monkeypatch)
    batch = make_batch(tmp_path, _prompts("wavespeed", "wavespeed", "skills_video"))
    index = {job.id: k for k, job in enumerate(batch.jobs)}
    outcome, _, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert outcome.completed == JOBS
    assert watch.parts == [(0, 6), *((a, min(a + 5, JOBS)) for a in range(6, JOBS, 5))]
    assert len(watch.intents) == JOBS
    assert all(index[job_id] < stored for job_id, stored in watch.intents)
    assert watch.intents[0][1] < JOBS  # sent before the batch was all stored
    ledger = check_images_match_ledger(tmp_path)
    assert ledger["finished"] is True
    assert [j["id"] for j in ledger["jobs"]] == [job.id for job in batch.jobs]
    log = (tmp_path / "run.log").read_text()
    assert "stored the batch's 40 jobs in the state (the last 34 while sending" in log
    requests = emulator.stats().wavespeed.requests + emulator.stats().skills_video.requests
    again, _, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert again.completed == JOBS
    assert watch.parts[-1][1] == JOBS  # nothing stored
    assert len(watch.intents) == JOBS  # nothing sent
    assert emulator.stats().wavespeed.requests + emulator.stats().skills_video.requests == (
        requests
    )


async def test_a_run_stopped_before_its_jobs_are_stored_is_resumed(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the batch is half stored: the run exits with the stored part's work
    committed, counts the jobs not stored yet as pending (in its result, not written to
    ledger.json, which run.log says waits), and the next run stores the rest and ends
    the batch."""
    watch = _Watch(monkeypatch, hold_from=16)
    # WaveSpeed only: a submit cut short by the stop is found again by listing, so the
    # count of tasks created is exact (a zero-latency skills.video task that finished
    # leaves its list, and would be sent again flagged ``possible_duplicate``).
    batch = make_batch(tmp_path, _prompts("wavespeed"), max_concurrent=2)
    outcome, doc, interrupted = await run_until_sigint(batch, emulator, watch.sent.wait)
    assert interrupted
    assert watch.stored == 16
    assert doc["totals"]["jobs"] == JOBS  # type: ignore[index]
    assert outcome.completed + outcome.failed + outcome.pending == JOBS
    assert outcome.pending >= JOBS - 16
    status = read_status(state_location(None, str(tmp_path)), str(tmp_path))
    assert status["totals"]["jobs"] == 16  # the state holds what was stored
    assert not (tmp_path / "ledger.json").exists()
    log = (tmp_path / "run.log").read_text()
    assert "24 of the batch's 40 jobs are not stored yet" in log
    monkeypatch.undo()
    outcome, doc, interrupted = await run_batch(batch, emulator_options(emulator))
    assert (interrupted, outcome.completed) == (False, JOBS)
    ledger = check_images_match_ledger(tmp_path)
    assert ledger["finished"] is True
    assert len(ledger["jobs"]) == JOBS
    assert emulator.stats().wavespeed.submits == JOBS


async def test_a_full_disk_while_the_jobs_are_stored_stops_the_run_and_a_rerun_ends_it(
    small_disk: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output folder and its state on a 12 MiB tmpfs, 2 MiB images, and the batch
    half stored when the disk fills up: exit 3 naming the cause, no job failed, the jobs
    not stored counted as pending; once the disk grows, a plain rerun stores the rest
    and completes every job, each task created once."""
    watch = _Watch(monkeypatch, hold_from=16)
    out = small_disk / "out"
    async with serve(EMULATOR, clock=clock) as server:
        batch = make_batch(out, _prompts("wavespeed"), max_concurrent=2)
        outcome, doc, interrupted = await run_batch(batch, emulator_options(server, clock=clock))
        assert exit_code(outcome, interrupted) == 3
        assert outcome.storage_failure is not None
        assert "No space left on device" in outcome.storage_failure
        assert outcome.failed == 0
        assert watch.stored == 16
        assert doc["totals"]["jobs"] == JOBS  # type: ignore[index]
        assert outcome.pending >= JOBS - 16
        monkeypatch.undo()
        _grow(small_disk)
        outcome, doc, interrupted = await run_batch(batch, emulator_options(server, clock=clock))
        stats = server.stats().wavespeed
    assert exit_code(outcome, interrupted) == 0, outcome
    assert (outcome.completed, outcome.failed) == (JOBS, 0)
    assert (stats.submits, stats.duplicate_submits) == (JOBS, 0)
    assert len(check_images_match_ledger(out)["jobs"]) == JOBS
