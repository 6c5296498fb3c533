"""Never lose work, never pay twice: unknown outcomes, SIGKILL chaos, Ctrl-C, resume."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile
from pipeline.engine._runner import run_batch
from tests.process_support import (
    emulator_process,
    get_json,
    start_run,
    wait_exit,
    write_manifest,
)
from tests.scheduler_support import check_images_match_ledger, emulator_options, make_batch

RESETS = EmulatorConfig(latency_s=0.05, image_scale=0.0625, seed=3, faults=FaultProfile(reset=0.3))


def _server_duplicates(base_url: str) -> set[str]:
    """Prompts the server (in another process) received more than once."""
    return _duplicates(get_json(f"{base_url}/_emulator/tasks"))


def _duplicates(tasks: list[dict[str, Any]]) -> set[str]:
    counts = Counter(t["input"]["prompt"] for t in tasks)
    return {prompt for prompt, n in counts.items() if n > 1}


@pytest.mark.anyio
@pytest.mark.parametrize("emulator_config", [RESETS])
async def test_lost_submit_replies_are_reconciled_or_flagged(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Connections dropped after a submit: every job completes; each duplicate is flagged."""
    prompts = [("skills_video", f"s{i}") for i in range(12)]
    prompts += [("wavespeed", f"w{i}") for i in range(12)]
    batch = make_batch(tmp_path, prompts, max_concurrent=3)
    outcome, doc, _ = await run_batch(batch, emulator_options(emulator))
    if outcome.pending:
        # A job whose submit was lost three times waits for the next run (reconcile first).
        outcome, doc, _ = await run_batch(batch, emulator_options(emulator))
    assert outcome.completed == 24
    assert emulator.stats().skills_video.resets + emulator.stats().wavespeed.resets > 0
    flagged = {j["prompt"] for j in doc["jobs"] if "possible_duplicate" in j.get("flags", [])}  # type: ignore[attr-defined]
    state = emulator.state
    duplicates = _duplicates([state.task_view(t) for t in state.store.tasks(None)])
    assert duplicates <= flagged
    # Every possible duplicate's cost is counted in the totals.
    listed = sum(j.get("possible_duplicate_cost", {}).get("usd", 0) for j in doc["jobs"])  # type: ignore[attr-defined]
    paid = sum(j["cost"]["usd"] for j in doc["jobs"])  # type: ignore[attr-defined]
    assert doc["totals"]["cost_usd"] == pytest.approx(paid + listed)  # type: ignore[index]
    check_images_match_ledger(tmp_path)


def test_sigkill_chaos_then_clean_finish(tmp_path: Path) -> None:
    """25 SIGKILLs at random moments, then a clean finish: no unflagged duplicate."""
    rng = random.Random(2026)
    prompts = [("wavespeed" if i % 2 else "skills_video", f"chaos prompt {i}") for i in range(300)]
    manifest = write_manifest(tmp_path / "chaos.yaml", prompts, rps=40, max_concurrent=4)
    out = tmp_path / "out"
    kills = 0
    with emulator_process("--latency", "0.4", "--jitter", "0.5", "--image-scale", "0.0625") as url:
        while kills < 25:
            proc = start_run(manifest, out, url, "--quiet")
            time.sleep(rng.uniform(0.4, 1.6))
            if proc.poll() is not None:
                proc.communicate()
                break  # finished before the kill: the batch was too small for more kills
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
        assert kills == 25, "the batch finished before 25 kills"
        final = start_run(manifest, out, url, "--quiet")
        code, _ = wait_exit(final, timeout=180)
        assert code == 0, final.stderr
        ledger = check_images_match_ledger(out)
        assert ledger["totals"]["completed"] == 300
        assert ledger["finished"] is True
        flagged = {
            j["prompt"] for j in ledger["jobs"] if "possible_duplicate" in j.get("flags", [])
        }
        duplicates = _server_duplicates(url)
        assert duplicates <= flagged, duplicates - flagged
        # A duplicate can only come from a submit in flight at a kill moment.
        assert len(duplicates) <= kills * 8
    assert not list((out / "images").glob("*.part"))


def test_ctrl_c_exits_130_fast_and_resume_resubmits_nothing(tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130 within 2 s; the rerun polls what was submitted."""
    prompts = [("wavespeed", f"w{i}") for i in range(10)] + [
        ("skills_video", f"s{i}") for i in range(10)
    ]
    manifest = write_manifest(tmp_path / "int.yaml", prompts, rps=20, max_concurrent=3)
    out = tmp_path / "out"
    with emulator_process("--latency", "1.5", "--jitter", "0", "--image-scale", "0.0625") as url:
        proc = start_run(manifest, out, url, "--quiet")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until some tasks are in flight
            time.sleep(0.2)
            if sum(p["submits"] for p in get_json(f"{url}/_emulator/stats").values()) >= 4:
                break
        # `status` reads the state while the run is writing it (WAL readers).
        status = subprocess.run(
            [sys.executable, "-m", "pipeline", "status", str(out), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        live = json.loads(status.stdout)
        assert live["totals"]["jobs"] == 20
        assert live["in_flight"] >= 1
        proc.send_signal(signal.SIGINT)
        code, seconds = wait_exit(proc, timeout=30)
        assert code == 130
        assert seconds < 2.0
        ledger = json.loads((out / "ledger.json").read_text())
        assert ledger["finished"] is False
        submitted = {j["id"] for j in ledger["jobs"] if j["remote_id"]}
        assert submitted
        rerun = start_run(manifest, out, url, "--quiet")
        code, _ = wait_exit(rerun, timeout=120)
        assert code == 0, rerun.stderr
        assert _server_duplicates(url) == set()
        final = check_images_match_ledger(out)
        assert final["totals"]["completed"] == 20
        before = {j["id"]: j["remote_id"] for j in ledger["jobs"] if j["remote_id"]}
        after = {j["id"]: j["remote_id"] for j in final["jobs"]}
        assert all(after[i] == rid for i, rid in before.items())


def test_budget_holds_under_kills_and_faults(tmp_path: Path) -> None:
    """Killed 10 times amid 5xx and dropped connections, the batch never spends past its cap."""
    rng = random.Random(7)
    prompts = [("wavespeed" if i % 2 else "skills_video", f"budget prompt {i}") for i in range(60)]
    cap = 0.9  # about half of what the 60 jobs would cost ($0.028 + 20 x $0.001 each)
    manifest = write_manifest(tmp_path / "b.yaml", prompts, rps=40, max_concurrent=4, max_usd=cap)
    out = tmp_path / "out"
    faults = ("--fault", "submit_5xx=0.1", "--fault", "poll_5xx=0.1", "--fault", "reset=0.05")
    args = ("--latency", "0.3", "--image-scale", "0.0625", *faults)
    with emulator_process(*args) as url:
        for _ in range(10):
            proc = start_run(manifest, out, url, "--quiet")
            time.sleep(rng.uniform(0.4, 1.4))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate()
        final = start_run(manifest, out, url, "--quiet")
        code, _ = wait_exit(final, timeout=180)
        stats = get_json(f"{url}/_emulator/stats")
    charged = stats["wavespeed"]["charged"] + stats["skills_video"]["charged"] * 0.001
    assert charged <= cap + 1e-9
    assert code == 3, final.stderr  # stopped by the budget, not by a crash
    ledger = json.loads((out / "ledger.json").read_text())
    # The ledger never under-reports: it counts what was charged plus, for each lost
    # submit reply, the estimate of a charge that may or may not have happened.
    assert ledger["totals"]["cost_usd"] >= charged - 1e-9
    paid = sum((j["cost"] or {}).get("usd") or 0 for j in ledger["jobs"])
    assert paid <= cap + 1e-9
    assert ledger["totals"]["completed"] >= 20
