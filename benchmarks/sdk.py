"""Figure 10: the pipeline's polling side by side with the official WaveSpeed SDK.

Each side runs the same jobs against a fresh emulator in its own process, with the same
seed, so the k-th task submitted takes the same time on both: the emulator draws each
duration uniformly in ``latency_s x (1 ± latency_jitter)`` (12.5 s ± 60 %: 5-20 s).

- SDK: a child process with ``concurrency`` threads; each takes the next job, calls
  ``wavespeed.Client(api_key=..., base_url=URL).run(MODEL, body)`` (the SDK polls every
  1 s by default) and downloads the outputs, as the pipeline does.
- pipeline: ``python -m pipeline run MANIFEST --out DIR --quiet`` as a child, with
  ``WAVESPEED_BASE_URL`` on the emulator and a dummy key: one wavespeed lane,
  ``max_concurrent`` = ``concurrency``, 100 requests/s and 100,000 images per minute
  (no limit binds).

Polls per job are the emulator's count; wall time is each child's, interpreter start-up
included on both sides. Large batches are simulated in virtual time instead
(``benchmarks.polling.simulate``, the same uniform durations, the SDK as fixed 1 s
polling from its submit) against the schedule before it had a prior, also with
WaveSpeed's documented 2 s minimum between checks imposed on it.

``python -m benchmarks.sdk serve SETUP_JSON`` and ``... sdk URL JOBS THREADS OUT`` are
the two children.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import random
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.polling import Fixed, Outcome, simulate
from benchmarks.procs import REPO, python_module, run_child
from benchmarks.results import Figure, at_most, info
from pipeline.emulator import EmulatorConfig, serve_forever
from pipeline.engine._polling import PollSchedule, PollSettings
from pipeline.providers.specs import WAVESPEED

MODEL = "kwaivgi/kling-image-o3/text-to-image"
LATENCY_S = 12.5
JITTER = 0.6  # 5-20 s
CONCURRENCY = 12
TARGET_POLLS = 2 / 3  # of the SDK's polls per job
TARGET_WALL = 1.05  # of the SDK's wall time
SDK_INTERVAL_S = 1.0  # the SDK's default poll_interval


class JitteredSetup(EmulatorSetup):
    """``EmulatorSetup`` with task durations spread uniformly around ``latency_s``."""

    latency_jitter: float = 0.0

    def config(self) -> EmulatorConfig:
        return dataclasses.replace(super().config(), latency_jitter=self.latency_jitter)


class JitteredEmulator(EmulatorProcess):
    """An ``EmulatorProcess`` whose child is this module's (it honours the jitter)."""

    def __enter__(self) -> JitteredEmulator:
        argv = python_module("benchmarks.sdk", "serve", self.setup.model_dump_json())
        self._proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self._stop()
            raise RuntimeError(f"emulator did not start (said {line!r})")
        self.base_url = line
        return self


@dataclass(frozen=True, slots=True)
class Side:
    """One side's run: what the emulator counted and how long the child took."""

    name: str
    jobs: int
    submits: int
    polls: int
    wall_s: float

    @property
    def polls_per_job(self) -> float:
        return self.polls / self.jobs


def _prompt(i: int) -> str:
    return f"benchmark job {i}: a lighthouse at dusk, variation {i}"


def _body(i: int) -> dict[str, Any]:
    """The SDK's request, as the pipeline's adapter builds it for the manifest below."""
    return {
        "prompt": _prompt(i),
        "aspect_ratio": "1:1",
        "resolution": "1k",
        "num_images": 1,
        "output_format": "png",
    }


def _manifest(folder: Path, jobs: int, concurrency: int) -> Path:
    prompts = [{"id": f"j{i:04d}", "prompt": _prompt(i)} for i in range(jobs)]
    doc = {
        "name": "sdk-comparison",
        "defaults": {"provider": "wavespeed", "aspect_ratio": "1:1", "resolution": "1k"}
        | {"output_format": "png", "n": 1},
        "providers": {
            # Limits that never bind (the account's images per minute included), as for
            # the SDK, which knows none.
            "wavespeed": {
                "requests_per_second": 100,
                "max_concurrent": concurrency,
                "images_per_minute": 100_000,
            }
        },
        "prompts": prompts,
    }
    path = folder / "sdk.yaml"
    path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return path


def _setup(seed: int) -> JitteredSetup:
    return JitteredSetup(latency_s=LATENCY_S, latency_jitter=JITTER, seed=seed)


def run_sdk(jobs: int, concurrency: int, folder: Path, seed: int) -> Side:
    """The official SDK's side on a fresh emulator. Raises ``RuntimeError`` on failure."""
    with JitteredEmulator(_setup(seed)) as emu:
        out = folder / "sdk"
        argv = python_module("benchmarks.sdk", "sdk", emu.base_url, str(jobs))
        child = run_child([*argv, str(concurrency), str(out)])
        if child.exit_code != 0:
            raise RuntimeError(f"SDK side failed:\n{child.stderr[-3000:]}")
        stats = emu.stats().for_provider("wavespeed")
    return Side("wavespeed SDK", jobs, stats.submits, stats.polls, child.wall_s)


def run_pipeline(jobs: int, concurrency: int, folder: Path, seed: int) -> Side:
    """The pipeline's side on a fresh emulator. Raises ``RuntimeError`` on failure."""
    manifest = _manifest(folder, jobs, concurrency)
    with JitteredEmulator(_setup(seed)) as emu:
        env = {"WAVESPEED_BASE_URL": emu.base_url, "WAVESPEED_API_KEY": "bench-key"}
        argv = python_module("pipeline", "run", str(manifest), "--out", str(folder / "run"))
        child = run_child([*argv, "--quiet"], env=env)
        if child.exit_code != 0:
            raise RuntimeError(f"pipeline side failed ({child.exit_code}):\n{child.stderr}")
        stats = emu.stats().for_provider("wavespeed")
    return Side("pipeline", jobs, stats.submits, stats.polls, child.wall_s)


def simulate_large(jobs: int, concurrency: int, seed: int) -> dict[str, Outcome]:
    """Virtual time: the same uniform durations through the SDK's polling and each
    schedule, ``concurrency`` in flight."""
    rng = random.Random(seed)
    low, high = LATENCY_S * (1 - JITTER), LATENCY_S * (1 + JITTER)
    durations = [rng.uniform(low, high) for _ in range(jobs)]
    schedules: dict[str, Callable[[], PollSchedule | Fixed]] = {
        "SDK (1 s)": lambda: Fixed(SDK_INTERVAL_S, first_s=0.0),
        "pipeline": lambda: PollSchedule.for_provider(WAVESPEED),
        "before": PollSchedule,
        "before, 2 s floor": lambda: PollSchedule(PollSettings(min_interval=2.0)),
    }
    return {
        name: simulate(name, make(), durations, concurrency) for name, make in schedules.items()
    }


def measure(
    jobs: int,
    log: Callable[[str], None],
    *,
    concurrency: int = CONCURRENCY,
    large: int = 2000,
    seed: int = 7,
) -> list[Figure]:
    """Figure 10: polls per job and wall time, pipeline vs the official SDK."""
    log(
        f"  {jobs} WaveSpeed jobs of {LATENCY_S * (1 - JITTER):g}-{LATENCY_S * (1 + JITTER):g} s"
        f" (uniform), {concurrency} in flight, a fresh emulator per side"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        sdk = run_sdk(jobs, concurrency, Path(tmp), seed)
        ours = run_pipeline(jobs, concurrency, Path(tmp), seed)
    for side in (sdk, ours):
        if side.submits != jobs:
            raise RuntimeError(f"{side.name} created {side.submits} tasks for {jobs} jobs")
    log("  {:18} {:>9} {:>8}".format("side", "polls/job", "wall s"))
    for side in (sdk, ours):
        log(f"  {side.name:18} {side.polls_per_job:9.2f} {side.wall_s:8.1f}")
    polls = ours.polls_per_job / sdk.polls_per_job
    wall = ours.wall_s / sdk.wall_s
    log(f"  pipeline / SDK: polls {polls:.3f} x, wall {wall:.3f} x")
    sim = simulate_large(large, concurrency, seed)
    base = sim["SDK (1 s)"]
    log(f"  {large:,} jobs simulated in virtual time, {concurrency} in flight:")
    log(
        "  {:18} {:>9} {:>7} {:>10} {:>12}".format(
            "schedule", "polls/job", "lag s", "vs SDK", "wall vs SDK"
        )
    )
    for name, o in sim.items():
        log(
            f"  {name:18} {o.polls_per_job:9.2f} {o.mean_lag_s:7.3f} "
            f"{o.polls_per_job / base.polls_per_job:9.3f}x {base.throughput / o.throughput:11.3f}x"
        )
    new, before, floored = sim["pipeline"], sim["before"], sim["before, 2 s floor"]
    details = {
        "jobs": jobs,
        "concurrency": concurrency,
        "latency_s": LATENCY_S,
        "latency_jitter": JITTER,
        "sides": [asdict(s) | {"polls_per_job": s.polls_per_job} for s in (sdk, ours)],
        "simulated": {name: asdict(o) for name, o in sim.items()},
    }
    return [
        at_most(
            "sdk_poll_ratio",
            f"10. polls/job vs the SDK, {jobs} jobs",
            polls,
            "x",
            TARGET_POLLS,
            details=details,
        ),
        at_most("sdk_wall_ratio", f"10. wall time vs the SDK, {jobs} jobs", wall, "x", TARGET_WALL),
        info("sdk_polls_per_job", "10. SDK polls per job", sdk.polls_per_job, ""),
        info("sdk_pipeline_polls_per_job", "10. pipeline polls per job", ours.polls_per_job, ""),
        at_most(
            "sdk_large_poll_ratio",
            f"10. polls vs the SDK, {large:,} simulated jobs",
            new.polls_per_job / base.polls_per_job,
            "x",
            TARGET_POLLS,
        ),
        at_most(
            "sdk_large_poll_before",
            f"10. polls vs the schedule before, {large:,} simulated",
            new.polls_per_job / before.polls_per_job,
            "x",
            1.0,
        ),
        at_most(
            "sdk_large_wall_floored",
            f"10. wall vs the schedule before + 2 s floor, {large:,}",
            floored.throughput / new.throughput,
            "x",
            1.0,
        ),
        info(
            "sdk_large_wall_before",
            f"10. wall vs the schedule before (polls < 2 s), {large:,}",
            before.throughput / new.throughput,
            "x",
        ),
        info(
            "sdk_large_wall_sdk",
            f"10. wall vs the SDK, {large:,} simulated",
            base.throughput / new.throughput,
            "x",
        ),
    ]


def _sdk_main(url: str, jobs: int, threads: int, out: Path) -> int:
    """The SDK side: ``threads`` threads share the jobs; each runs, then downloads."""
    import wavespeed

    out.mkdir(parents=True, exist_ok=True)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(jobs):
        todo.put(i)
    errors: list[BaseException] = []

    def worker() -> None:
        client = wavespeed.Client(api_key="bench-key", base_url=url)
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                result = client.run(MODEL, _body(i))
                for k, image_url in enumerate(result["outputs"]):
                    with urllib.request.urlopen(image_url, timeout=60) as resp:
                        (out / f"{i}-{k}.png").write_bytes(resp.read())
            except Exception as exc:  # reported by the exit code, after the others end
                errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for exc in errors[:5]:
        print(repr(exc), file=sys.stderr)
    return 1 if errors else 0


def _serve_main(raw: str) -> None:
    setup = JitteredSetup.model_validate_json(raw)

    def ready(base_url: str) -> None:
        print(base_url, flush=True)

    anyio.run(serve_forever, setup.config(), "127.0.0.1", 0, ready, backend="asyncio")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        _serve_main(sys.argv[2])
    elif sys.argv[1] == "sdk":
        sys.exit(_sdk_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])))
    else:
        sys.exit("usage: python -m benchmarks.sdk serve SETUP_JSON | sdk URL JOBS THREADS OUT")
