"""The run's ledger: a resume with nothing to do, and a ledger that never lags the state."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import EmulatorServer
from pipeline.runner import run_batch
from pipeline.state import StateStore
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

pytestmark = pytest.mark.anyio


def _without_time(ledger: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ledger.items() if k != "updated_at"}


async def test_resume_with_nothing_to_do_rewrites_the_same_ledger(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A finished batch rerun: nothing sent, and the ledger (and the returned one) unchanged."""
    batch = make_batch(tmp_path, [("wavespeed", "a"), ("skills_video", "b"), ("wavespeed", "c")])
    await run_batch(batch, emulator_options(emulator))
    first = json.loads((tmp_path / "ledger.json").read_text())
    requests = emulator.stats().wavespeed.requests + emulator.stats().skills_video.requests
    outcome, doc, _ = await run_batch(batch, emulator_options(emulator))
    assert outcome.completed == 3
    assert emulator.stats().wavespeed.requests + emulator.stats().skills_video.requests == requests
    second = json.loads((tmp_path / "ledger.json").read_text())
    assert _without_time(second) == _without_time(first)
    assert second["finished"] is True
    assert list(doc["jobs"]) == second["jobs"]  # type: ignore[call-overload]
    assert doc["totals"] == second["totals"]


async def test_files_moved_on_resume_are_in_the_final_ledger(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """An edited-away job's image found under a stale name is moved back, and the final
    ledger says where it now is (though the resume had no job to run)."""
    batch = make_batch(tmp_path, [("wavespeed", "a")])
    await run_batch(batch, emulator_options(emulator))
    edited = replace(batch, jobs=(replace(batch.jobs[0], prompt="a, but blue"),))
    await run_batch(edited, emulator_options(emulator))
    # As if a crash came between moving a file and recording it: recorded under another name.
    state = await StateStore.open(tmp_path / "state.db")
    archived = next(r for r in await state.records() if "superseded" in r.flags)
    image = archived.images[0]
    stale = "images/somewhere-else-1.png"
    os.replace(tmp_path / image["path"], tmp_path / stale)
    await state.set_images(archived.id, [{**image, "path": stale}])
    await state.close()
    requests = emulator.stats().wavespeed.requests
    _, doc, _ = await run_batch(edited, emulator_options(emulator))
    assert emulator.stats().wavespeed.requests == requests
    ledger = check_images_match_ledger(tmp_path)
    listed = {j["id"]: [img["path"] for img in j["images"]] for j in ledger["jobs"]}
    assert listed[archived.id] == [image["path"]]
    assert list(doc["jobs"]) == ledger["jobs"]  # type: ignore[call-overload]
