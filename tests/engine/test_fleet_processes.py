"""A fleet of real processes on one PostgreSQL state: kill -9 of one mid-run, a restart,
and every job completed once; and the command line's errors for a bad state URL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.process_support import (
    emulator_process,
    get_json,
    run_env,
    start_run,
    wait_exit,
    write_manifest,
)

SECRET = "pw-canary-7f3a"


def test_three_processes_one_killed_every_job_completed_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """Three `pipeline run` processes share a batch; one is killed with SIGKILL mid-run
    and started again: all three exit 0, every job is completed exactly once in the
    ledger, and a task the server created twice is one flagged possible_duplicate."""
    prompts = [("wavespeed" if i % 2 else "skills_video", f"fleet chaos {i}") for i in range(40)]
    manifest = write_manifest(tmp_path / "fleet.yaml", prompts, rps=30, max_concurrent=3)
    out = tmp_path / "out"
    args = ("--state", postgres_url, "--lease-s", "2", "--quiet")
    with emulator_process("--latency", "1.0", "--jitter", "0.5", "--image-scale", "0.0625") as url:
        workers = [start_run(manifest, out, url, *args) for _ in range(3)]
        time.sleep(2.5)
        victim = workers[0]
        assert victim.poll() is None, "the batch finished before the kill"
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        workers[0] = start_run(manifest, out, url, *args)
        codes = [wait_exit(w, timeout=180)[0] for w in workers]
        assert codes == [0, 0, 0], [w.stderr for w in workers]
        tasks = get_json(f"{url}/_emulator/tasks")
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["totals"]["completed"] == 40
    assert ledger["finished"] is True
    assert sorted(j["prompt"] for j in ledger["jobs"]) == sorted(p for _, p in prompts)
    created = Counter(t["input"]["prompt"] for t in tasks)
    twice = {p for p, n in created.items() if n > 1}
    flagged = {j["prompt"] for j in ledger["jobs"] if "possible_duplicate" in j.get("flags", [])}
    assert twice <= flagged
    assert len(twice) <= 3 * 2  # only submits in flight at the kill (its lanes: 3 + 3)
    assert not list((out / "images").glob("*.part"))


def test_a_bad_state_url_stops_before_anything_is_sent(tmp_path: Path) -> None:
    """An unreachable database and an unknown scheme: exit 2, a clear message, the
    password never printed, nothing sent."""
    manifest = write_manifest(tmp_path / "m.yaml", [("wavespeed", "a")])
    env = run_env("http://127.0.0.1:9")  # a closed port: anything sent would fail
    cases = {
        f"postgresql://pipeline:{SECRET}@127.0.0.1:9/batches": "cannot connect",
        "redis://127.0.0.1:9/0": "unknown scheme",
    }
    for state, message in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", str(manifest), "--state", state],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert SECRET not in done.stderr + done.stdout
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
