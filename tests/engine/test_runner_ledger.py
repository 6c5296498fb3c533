"""The run's ledger: a resume with nothing to do, and a ledger that never lags the state."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer
from pipeline.engine import _runner
from pipeline.engine._runner import run_batch
from pipeline.ledger import read_status
from pipeline.store import state_location
from pipeline.store._sqlite import SqliteStore
from tests.scheduler_support import (
    check_images_match_ledger,
    emulator_options,
    make_batch,
    run_until_sigint,
)

pytestmark = pytest.mark.anyio


def _without_time(ledger: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ledger.items() if k != "updated_at"}


async def test_resume_with_nothing_to_do_keeps_the_ledger(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A finished batch rerun: nothing sent, and ledger.json (current already) is kept as it
    is, not rewritten; the returned ledger is the file's."""
    batch = make_batch(tmp_path, [("wavespeed", "a"), ("skills_video", "b"), ("wavespeed", "c")])
    await run_batch(batch, emulator_options(emulator, clock=clock))
    path = tmp_path / "ledger.json"
    first, written = json.loads(path.read_text()), _identity(path)
    requests = emulator.stats().wavespeed.requests + emulator.stats().skills_video.requests
    for _ in range(2):  # the stamp is put back: a third run keeps it too
        outcome, doc, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
        assert outcome.completed == 3
        assert _identity(path) == written
        assert json.loads(path.read_text()) == first
        assert first["finished"] is True
        assert {k: v for k, v in doc.items() if k != "jobs"} == _without_jobs(first)
        assert list(doc["jobs"]) == first["jobs"]  # type: ignore[call-overload]
    assert emulator.stats().wavespeed.requests + emulator.stats().skills_video.requests == requests


def _identity(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def _without_jobs(ledger: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ledger.items() if k != "jobs"}


@pytest.mark.parametrize("change", ["deleted", "edited", "unstamped", "renamed"])
async def test_resume_rewrites_a_ledger_it_cannot_vouch_for(
    emulator: EmulatorServer, tmp_path: Path, change: str, clock: VirtualClock
) -> None:
    """A rerun with nothing to do rewrites ledger.json when the file is gone or was
    changed, when the state holds no stamp for it (as after a killed run), or when the
    header would differ (the manifest named otherwise)."""
    batch = make_batch(tmp_path, [("wavespeed", "a"), ("skills_video", "b")])
    await run_batch(batch, emulator_options(emulator, clock=clock))
    path = tmp_path / "ledger.json"
    first = json.loads(path.read_text())
    if change == "deleted":
        path.unlink()
    elif change == "edited":
        path.write_text(path.read_text().replace('"finished": true', '"finished": false'))
    elif change == "unstamped":
        state = await SqliteStore.open(tmp_path / "state.db")
        await state.set_meta({"ledger": ""})
        await state.close()
    else:
        batch = replace(batch, manifest_path="elsewhere/test.yaml")
    written = _identity(path) if path.exists() else None
    _, doc, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert _identity(path) != written
    second = json.loads(path.read_text())
    assert _without_time(second) == {**_without_time(first), "manifest": batch.manifest_path}
    assert second["updated_at"] >= first["updated_at"]
    assert _without_jobs(doc) == _without_jobs(second)
    # Stamped again: the next rerun keeps it.
    written = _identity(path)
    await run_batch(batch, emulator_options(emulator, clock=clock))
    assert _identity(path) == written


async def test_a_run_that_died_leaves_no_stamp_behind(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    """A run that changed the state and died before its last ledger write: the next run,
    though it has nothing to do and changes nothing, rewrites the stale ledger."""
    batch = make_batch(tmp_path, [("wavespeed", "a")])
    await run_batch(batch, emulator_options(emulator, clock=clock))
    edited = replace(batch, jobs=(replace(batch.jobs[0], prompt="a, but blue"),))
    await run_batch(edited, emulator_options(emulator, clock=clock))
    stale = json.loads((tmp_path / "ledger.json").read_text())
    assert [j["prompt"] for j in stale["jobs"]] == ["a", "a, but blue"]

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    # Edited back: the sync restores the first version (a change, but no work), then dies.
    monkeypatch.setattr("pipeline.engine._runner.plan_work", crash)
    with pytest.raises(RuntimeError, match="killed"):
        await run_batch(batch, emulator_options(emulator, clock=clock))
    monkeypatch.undo()
    requests = emulator.stats().wavespeed.requests
    _, doc, _ = await run_batch(batch, emulator_options(emulator, clock=clock))
    assert emulator.stats().wavespeed.requests == requests
    ledger = check_images_match_ledger(tmp_path)
    current = [j for j in ledger["jobs"] if "superseded" not in j.get("flags", [])]
    assert [j["prompt"] for j in current] == ["a"]
    assert list(doc["jobs"]) == ledger["jobs"]  # type: ignore[call-overload]
    # Its totals are the survey's (the state's own tally is not taken again): the same.
    status = read_status(state_location(None, str(tmp_path)), str(tmp_path))
    assert (ledger["totals"], ledger["providers"]) == (status["totals"], status["providers"])


async def test_files_moved_on_resume_are_in_the_final_ledger(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """An edited-away job's image found under a stale name is moved back, and the final
    ledger says where it now is (though the resume had no job to run)."""
    batch = make_batch(tmp_path, [("wavespeed", "a")])
    await run_batch(batch, emulator_options(emulator, clock=clock))
    edited = replace(batch, jobs=(replace(batch.jobs[0], prompt="a, but blue"),))
    await run_batch(edited, emulator_options(emulator, clock=clock))
    # As if a crash came between moving a file and recording it: recorded under another name.
    state = await SqliteStore.open(tmp_path / "state.db")
    archived = next(r for r in await state.records() if "superseded" in r.flags)
    image = archived.images[0]
    stale = "images/somewhere-else-1.png"
    os.replace(tmp_path / image["path"], tmp_path / stale)
    await state.set_images(archived.id, [{**image, "path": stale}])
    await state.close()
    requests = emulator.stats().wavespeed.requests
    _, doc, _ = await run_batch(edited, emulator_options(emulator, clock=clock))
    assert emulator.stats().wavespeed.requests == requests
    ledger = check_images_match_ledger(tmp_path)
    listed = {j["id"]: [img["path"] for img in j["images"]] for j in ledger["jobs"]}
    assert listed[archived.id] == [image["path"]]
    assert list(doc["jobs"]) == ledger["jobs"]  # type: ignore[call-overload]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(latency_s=0.5, image_scale=0.125)])
async def test_an_interrupted_run_whose_rewrite_is_slow_exits_without_it(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C on a batch whose ledger takes long to write (a million jobs, here any batch):
    the run stops with its state committed and its counts from the store's tally, leaves
    ledger.json for the next run (it says so in run.log), and the next run rewrites it."""
    monkeypatch.setattr(_runner, "FINAL_LEDGER_MAX_S", -1.0)
    batch = make_batch(tmp_path, [("wavespeed", f"w{i}") for i in range(8)], max_concurrent=2)

    # Once the run's handler is up and the first tasks are in flight.
    outcome, doc, interrupted = await run_until_sigint(batch, emulator, lambda: anyio.sleep(0.3))
    assert interrupted
    status = read_status(state_location(None, str(tmp_path)), str(tmp_path))
    assert "jobs" not in doc
    assert doc["totals"] == status["totals"]
    assert (outcome.completed, outcome.pending) == (
        status["totals"]["completed"],
        status["totals"]["pending"],
    )
    assert outcome.pending > 0
    log = (tmp_path / "run.log").read_text()
    assert "ledger.json not rewritten" in log
    outcome, doc, interrupted = await run_batch(batch, emulator_options(emulator))
    assert (interrupted, outcome.completed) == (False, 8)
    ledger = check_images_match_ledger(tmp_path)
    assert ledger["finished"] is True
    assert len(ledger["jobs"]) == 8
