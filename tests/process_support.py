"""Helpers for tests that drive `pipeline` and `pipeline emulate` as separate processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROVIDER_ENV = ("WAVESPEED", "SKILLS_VIDEO")


@contextmanager
def emulator_process(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `pipeline emulate --port 0 ARGS` in its own process; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "emulate", "--port", "0", *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, f"emulator did not start: {line!r}"
        yield match.group(0)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def run_env(base_url: str) -> dict[str, str]:
    """Environment pointing both providers at ``base_url`` with throwaway keys."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for name in PROVIDER_ENV:
        env[f"{name}_BASE_URL"] = base_url
        env[f"{name}_API_KEY"] = "test-key"
    return env


def start_run(manifest: Path, out: Path, base_url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(manifest), "--out", str(out), *extra],
        env=run_env(base_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # 127.0.0.1 only
        return json.loads(resp.read())


def write_manifest(path: Path, prompts: Sequence[tuple[str, str]], **limits: float) -> Path:
    """A YAML manifest of (provider, prompt) jobs with the given lane limits."""
    rps = limits.get("rps", 20)
    conc = int(limits.get("max_concurrent", 4))
    lines = [
        "name: proc-test",
        "providers:",
        # The emulator's account: no tier (else a run would assume Bronze's 2 images/min).
        f"  wavespeed: {{requests_per_second: {rps}, max_concurrent: {conc}, "
        "images_per_minute: 100000}",
        f"  skills_video: {{requests_per_second: {rps}, max_concurrent: {conc}, "
        "usd_per_credit: 0.001}",
    ]
    if "max_usd" in limits:
        lines.append(f"budget: {{max_usd: {limits['max_usd']}}}")
    lines.append("prompts:")
    for i, (provider, prompt) in enumerate(prompts):
        lines.append(f"  - {{id: j{i}, provider: {provider}, prompt: {json.dumps(prompt)}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_exit(proc: subprocess.Popen[str], timeout: float) -> tuple[int, float]:
    """Exit code and seconds it took to exit."""
    t0 = time.monotonic()
    proc.communicate(timeout=timeout)
    return proc.returncode, time.monotonic() - t0
