"""Figure 6: peak RSS of the pipeline process while it downloads 5,000 images of ~4 MB.

The emulator (its own process) serves real-size images (``real_size_images``: mostly
incompressible noise, each image its own bytes), scaled to ~4 MiB each; the pipeline
runs in its own process, whose peak RSS the kernel reports when it exits. So that 20 GB
of images do not fill the disk, the driver deletes each image once the pipeline has
renamed it into place (the pipeline never reads a finished image again during a run),
noting its size; ``.part`` files are left alone.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import python_module, run_child
from benchmarks.results import Figure, at_most, info
from benchmarks.workload import PROVIDERS, Workload, WorkResult
from pipeline.emulator import image_size

TARGET_MB = 200.0
IMAGE_BYTES = 4 * 1024 * 1024
# A real-size 1:1 "1k" PNG weighs 2 MiB and grows as (scale ** 1.5): scaled to 4 MiB.
SCALE = (IMAGE_BYTES / (2 * 1024 * 1024)) ** (2 / 3)


def _sweep(images: Path, stop: threading.Event, deleted: list[int]) -> None:
    """Delete finished images until ``stop`` (and once more after it); ``deleted`` counts
    them and their bytes."""
    while True:
        stopping = stop.wait(0.2)
        try:
            entries = list(os.scandir(images))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.endswith(".png"):
                try:
                    deleted[1] += entry.stat(follow_symlinks=False).st_size
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                deleted[0] += 1
        if stopping:
            return


def measure(jobs: int, log: Callable[[str], None]) -> list[Figure]:
    """Figure 6: the pipeline's peak RSS over ``jobs`` jobs of ~4 MB images."""
    width, height = image_size("1:1", "1k", SCALE)
    setup = EmulatorSetup(image_scale=SCALE, real_size_images=True)
    deleted = [0, 0]  # files, bytes
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
    size = deleted[1] / max(1, deleted[0])
    gb = deleted[1] / 1e9
    log(
        f"  {result.completed:,}/{jobs:,} jobs, {downloads:,} images of {size / 2**20:.2f} MiB "
        f"on average ({width}x{height} real-size PNG), {gb:.1f} GB in {result.seconds:.1f} s "
        f"({gb / result.seconds * 1000:.0f} MB/s); peak RSS {child.max_rss_mb:.0f} MB "
        f"(driver deleted {deleted[0]:,} finished files)"
    )
    details = {
        "jobs": jobs,
        "completed": result.completed,
        "image_bytes": size,
        "stored_bytes": deleted[1],
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
