"""A canary API key never appears in any file the run writes or anything it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.process_support import emulator_process, write_manifest


def _pipeline(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=180,
        check=False,
    )


def test_canary_key_never_leaks(tmp_path: Path) -> None:
    """Right key, wrong key, faults, status, report, --json: the key is nowhere."""
    canary = f"sk-canary-{uuid.uuid4().hex}"
    prompts = [("wavespeed", f"w{i}") for i in range(6)]
    prompts += [("skills_video", f"s{i}") for i in range(6)]
    prompts.append(("skills_video", "rejected [[fail]]"))
    manifest = write_manifest(tmp_path / "m.yaml", prompts, rps=20, max_concurrent=3)
    out_ok, out_bad = tmp_path / "ok", tmp_path / "bad"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["CANARY_KEY"] = canary
    printed = b""
    faults = ["--fault", "poll_5xx=0.2", "--fault", "rate_429=0.1", "--fault", "reset=0.05"]
    with emulator_process(
        "--latency",
        "0.05",
        "--image-scale",
        "0.0625",
        "--require-key",
        "CANARY_KEY",
        *faults,
        env=env,
    ) as url:
        for out, key in ((out_ok, canary), (out_bad, canary[::-1])):
            run_env = dict(env)
            for name in ("WAVESPEED", "SKILLS_VIDEO"):
                run_env[f"{name}_BASE_URL"] = url
                run_env[f"{name}_API_KEY"] = key
            for args in (
                ["run", str(manifest), "--out", str(out), "--json"],
                ["status", str(out), "--json"],
                ["status", str(out)],
                ["report", str(out)],
            ):
                proc = _pipeline(args, run_env, tmp_path)
                printed += proc.stdout + proc.stderr
    assert (out_ok / "report.html").exists()
    assert b"auth" in (out_bad / "ledger.json").read_bytes()  # the wrong key was refused
    needles = (canary.encode(), canary[::-1].encode())
    for needle in needles:
        assert needle not in printed
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in written)
    for path in written:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"key found in {path}"
