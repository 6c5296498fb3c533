"""Overlapping runs on one output folder (the default sqlite state), as real processes:
a cron job that starts while yesterday's still runs never pays twice."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.process_support import emulator_process, get_json, start_run, wait_exit, write_manifest


def test_overlapping_runs_never_submit_twice(tmp_path: Path) -> None:
    """Three runs started half a second apart on one folder: the first works, the others
    exit 2 naming it (host, pid, since) with nothing sent. Killed with SIGKILL, the
    holder blocks nothing: the next run takes over and finishes, and the ledger's spend
    equals what the provider charged, possible duplicates included."""
    prompts = [("wavespeed" if i % 2 else "skills_video", f"overlap {i}") for i in range(24)]
    manifest = write_manifest(tmp_path / "overlap.yaml", prompts, rps=20, max_concurrent=3)
    out = tmp_path / "out"
    with emulator_process("--latency", "3.0", "--jitter", "0.3", "--image-scale", "0.0625") as url:
        first = start_run(manifest, out, url, "--quiet")
        others = []
        for _ in range(2):
            time.sleep(0.5)
            others.append(start_run(manifest, out, url, "--quiet"))
        for proc in others:
            _, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 2, stderr
            assert f"in use by pid {first.pid} on " in stderr
        time.sleep(1.5)
        assert first.poll() is None, "the batch finished before the kill"
        first.send_signal(signal.SIGKILL)
        first.communicate()
        rerun = start_run(manifest, out, url, "--quiet")
        code, _ = wait_exit(rerun, timeout=120)
        assert code == 0, rerun.stderr
        stats = get_json(f"{url}/_emulator/stats")
        tasks = get_json(f"{url}/_emulator/tasks")
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["totals"]["completed"] == 24
    providers = ledger["providers"]
    assert providers["wavespeed"]["cost_usd"] == pytest.approx(stats["wavespeed"]["charged"])
    assert providers["skills_video"]["credits"] == pytest.approx(stats["skills_video"]["charged"])
    created: dict[str, int] = {}
    for task in tasks:
        created[task["input"]["prompt"]] = created.get(task["input"]["prompt"], 0) + 1
    twice = {p for p, n in created.items() if n > 1}
    flagged = {j["prompt"] for j in ledger["jobs"] if "possible_duplicate" in j.get("flags", [])}
    assert twice <= flagged


def test_a_second_run_names_the_holder(tmp_path: Path) -> None:
    """The refused run's message names the holder's host, its pid and since when."""
    prompts = [("wavespeed", f"holder {i}") for i in range(6)]
    manifest = write_manifest(tmp_path / "m.yaml", prompts, rps=5, max_concurrent=1)
    out = tmp_path / "out"
    with emulator_process("--latency", "2.0", "--image-scale", "0.0625") as url:
        holder = start_run(manifest, out, url, "--quiet")
        deadline = time.monotonic() + 30
        while not (out / "state.db.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        second = start_run(manifest, out, url, "--quiet")
        _, stderr = second.communicate(timeout=60)
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert second.returncode == 2
    assert f"pid {holder.pid} on {socket.gethostname()}" in stderr
    assert re.search(r"since 20\d\d-\d\d-\d\dT", stderr)
    assert "Traceback" not in stderr
