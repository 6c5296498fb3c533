"""Back-pressure, in virtual time against the emulator: when images come slower than tasks
finish, the lanes wait for the download stage instead of paying ahead of what is stored.
Tasks finished at the provider and not yet downloaded stay below a small multiple of the
tasks in flight, however many jobs the batch has."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.emulator._tasks import Outcome
from pipeline.engine import run_batch
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio

IN_FLIGHT = 8


def _waiting(server: EmulatorServer) -> int:
    """Tasks that ended completed at the provider and whose images nobody fetched yet."""
    state = server.state
    now = state.clock()
    fetched = {task_id for task_id, _ in state.downloaded}
    return sum(
        1
        for t in state.store.tasks(None)
        if t.ends <= now and t.outcome is Outcome.COMPLETED and t.id not in fetched
    )


@pytest.mark.parametrize("jobs", [60, 180])
async def test_finished_tasks_never_pile_up_ahead_of_their_downloads(
    tmp_path: Path, clock: VirtualClock, jobs: int
) -> None:
    """Tasks of 0.2 s, 8 in flight, each image 2 s to come: without back-pressure the
    lanes would finish almost every task before a tenth of the images arrived. The
    backlog stays within 4 x the tasks in flight at every moment, at 60 jobs and at 180,
    and every job completes."""
    faults = FaultProfile(download_delay_s=2.0)
    config = EmulatorConfig(image_scale=0.0625, latency_s=0.2, faults=faults, seed=2)
    peak = 0
    async with serve(config, clock=clock) as server:
        batch = make_batch(
            tmp_path,
            [("wavespeed", f"slow images {i}") for i in range(jobs)],
            max_concurrent=IN_FLIGHT,
            rps=1000,
        )
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, _waiting(server))
                    await clock.sleep(0.1)

            tg.start_soon(watch)
            outcome, _, _ = await run_batch(batch, emulator_options(server, clock=clock))
            tg.cancel_scope.cancel()
    assert outcome.completed == jobs
    assert 0 < peak <= 4 * IN_FLIGHT
    check_images_match_ledger(tmp_path)
