"""The run's own storage fails mid-run: a real small file system (a tmpfs mount) filling
up, and the S3 server refusing writes. Either way the run stops submitting at once, fails
no paid job, exits 3 naming the cause and the paid images waiting; once the storage is
fixed, a plain rerun downloads them, paying nothing twice."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, serve
from pipeline.engine import exit_code, run_batch
from pipeline.jobs import Batch
from tests.outputs.conftest import Bucket
from tests.outputs.s3_front import S3Front
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio

JOBS = 24
# Real-size images: about 2 MiB each at 1K, incompressible.
EMULATOR = EmulatorConfig(real_size_images=True, latency_s=0.5, latency_jitter=0.5, seed=3)


def _mount(path: Path, size: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.fail(f"this test mounts a tmpfs (it needs root): {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs, mounted for the test (room for the state and a few images)."""
    path = tmp_path / "disk"
    path.mkdir()
    _mount(path, "12m")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _grow(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=256m", str(path)], check=True)


def _jobs(doc: dict[str, object]) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", doc["jobs"])


async def _run(batch: Batch, server: EmulatorServer, clock: VirtualClock) -> tuple[Any, Any, int]:
    outcome, doc, interrupted = await run_batch(batch, emulator_options(server, clock=clock))
    return outcome, doc, exit_code(outcome, interrupted)


def _check_stopped(
    outcome: Any, doc: dict[str, object], server: EmulatorServer, cause: str
) -> None:
    """Exit 3 material: the cause named, no job failed, submits stopped, the paid images
    waiting counted."""
    submits = server.stats().wavespeed.submits
    assert outcome.storage_failure is not None
    assert cause in outcome.storage_failure
    assert not [j for j in _jobs(doc) if j["status"] == "failed"]
    assert outcome.failed == 0
    assert submits < JOBS  # it stopped submitting
    # Paid (the task's id recorded) and waiting: one image a job here.
    paid = [j for j in _jobs(doc) if j["status"] == "submitted" and j["remote_id"]]
    assert paid
    assert len(paid) <= submits - outcome.completed  # the others: cut off as it stopped
    assert f"; {len(paid)} paid images ({len(paid)} jobs) wait" in outcome.stop_reason
    assert "wait for their download" in outcome.stop_reason


async def test_a_full_disk_stops_the_run_and_a_rerun_downloads_the_paid_images(
    small_disk: Path, clock: VirtualClock
) -> None:
    """The output folder (and its state) on a 12 MiB tmpfs, 24 images of about 2 MiB:
    the disk fills up mid-run; exit 3 with "No space left on device" and the paid images
    waiting; then the disk grows and a plain rerun completes every job, 24 tasks in all."""
    out = small_disk / "out"
    async with serve(EMULATOR, clock=clock) as server:
        batch = make_batch(out, [("wavespeed", f"big {i}") for i in range(JOBS)])
        outcome, doc, code = await _run(batch, server, clock)
        assert code == 3
        _check_stopped(outcome, doc, server, "No space left on device")
        _grow(small_disk)
        outcome, doc, code = await _run(batch, server, clock)
        stats = server.stats().wavespeed
    assert code == 0, outcome
    assert (outcome.completed, outcome.failed) == (JOBS, 0)
    assert (stats.submits, stats.duplicate_submits) == (JOBS, 0)
    check_images_match_ledger(out)
    assert not list((out / "images").glob("*.part"))


async def test_a_bucket_that_refuses_writes_stops_the_run_and_a_rerun_stores_them(
    front: S3Front,
    bucket: Bucket,
    clock: VirtualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The S3 server starts refusing writes (403 AccessDenied) after a few images: exit 3
    naming the refusal, no job failed; once writes are allowed again a plain rerun stores
    every image and ledger.json, 24 tasks in all."""
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    front.deny_after_puts = 5
    async with serve(EMULATOR, clock=clock) as server:
        batch = replace(
            make_batch(tmp_path, [("wavespeed", f"big {i}") for i in range(JOBS)]),
            output_dir=bucket.url("run"),
        )
        outcome, doc, code = await _run(batch, server, clock)
        assert code == 3
        _check_stopped(outcome, doc, server, "access denied")
        front.deny_after_puts = None
        front.deny_writes = False
        outcome, doc, code = await _run(batch, server, clock)
        stats = server.stats().wavespeed
    assert code == 0, outcome
    assert (outcome.completed, outcome.failed) == (JOBS, 0)
    assert (stats.submits, stats.duplicate_submits) == (JOBS, 0)
    keys = bucket.keys()
    assert "run/ledger.json" in keys
    assert len([k for k in keys if k.startswith("run/images/")]) == JOBS
