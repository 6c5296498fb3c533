"""Figure 6: peak RSS of the pipeline process while it downloads 5,000 images of ~4 MB.

The emulator (its own process) serves one incompressible noise PNG of ~4 MiB per image
(see ``benchmarks.emulator_proc``); the pipeline runs in its own process, whose peak
RSS the kernel reports when it exits. So that 20 GB of images do not fill the disk, the
driver deletes each image once the pipeline has renamed it into place (the pipeline
never reads a finished image again during a run); ``.part`` files are left alone.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup, noise_render
from benchmarks.procs import python_module, run_child
from benchmarks.results import Figure, at_most, info
from benchmarks.workload import PROVIDERS, Workload, WorkResult
from pipeline.emulator import image_size

TARGET_MB = 200.0
IMAGE_BYTES = 4 * 1024 * 1024
# The 1:1 "1k" image scaled so that width x height x 3 (RGB noise) is about 4 MiB.
SCALE = (IMAGE_BYTES / 3) ** 0.5 / 1024


def _sweep(images: Path, stop: threading.Event, deleted: list[int]) -> None:
    while not stop.wait(0.2):
        try:
            entries = list(os.scandir(images))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.endswith(".png"):
                Path(entry.path).unlink(missing_ok=True)
                deleted[0] += 1


def measure(jobs: int, log: Callable[[str], None]) -> list[Figure]:
    """Figure 6: the pipeline's peak RSS over ``jobs`` jobs of ~4 MB images."""
    width, height = image_size("1:1", "1k", SCALE)
    setup = EmulatorSetup(image_scale=SCALE, noise_images=True)
    deleted = [0]
    with EmulatorProcess(setup) as emu, tempfile.TemporaryDirectory() as out:
        w = Workload(mode="pipeline", base_url=emu.base_url, out_dir=out, jobs=jobs)
        stop = threading.Event()
        sweeper = threading.Thread(target=_sweep, args=(Path(out) / "images", stop, deleted))
        sweeper.start()
        try:
            child = run_child(python_module("benchmarks.worker", w.model_dump_json()))
        finally:
            stop.set()
            sweeper.join()
        stats = emu.stats()
        downloads = sum(stats.for_provider(p).downloads for p in PROVIDERS)
    if child.exit_code != 0:
        raise RuntimeError(f"memory run failed:\n{child.stderr[-3000:]}")
    result = WorkResult.model_validate_json(child.stdout.strip().splitlines()[-1])
    size = len(noise_render("x", 1, width, height, "png"))
    gb = downloads * size / 1e9
    log(
        f"  {result.completed:,}/{jobs:,} jobs, {downloads:,} images of {size / 2**20:.2f} MiB "
        f"({width}x{height} noise PNG), {gb:.1f} GB in {result.seconds:.1f} s "
        f"({gb / result.seconds * 1000:.0f} MB/s); peak RSS {child.max_rss_mb:.0f} MB "
        f"(driver deleted {deleted[0]:,} finished files)"
    )
    details = {
        "jobs": jobs,
        "completed": result.completed,
        "image_bytes": size,
        "seconds": result.seconds,
        "cpu_s": child.cpu_s,
    }
    return [
        at_most(
            "memory_peak_rss_mb",
            f"6. peak RSS, {jobs:,} x 4 MB images",
            child.max_rss_mb,
            "MB",
            TARGET_MB,
            details=details,
        ),
        info(
            "memory_throughput_mb_s",
            "6. image bytes stored per second",
            gb * 1000 / result.seconds,
            "MB/s",
        ),
    ]
