"""Figure 11: real-size images, 2,000 x 2 MiB to a local folder and to an S3 server.

The emulator (its own process) serves real-size images (``real_size_images`` at
``image_scale=1.0``: a 1:1 1k PNG of about 2 MiB, mostly incompressible noise, each image
its own bytes). Local: figure 1's workload (2,000 single-image jobs, both providers, 32 in
flight each) with those images, alternating floor / pipeline ``ROUNDS`` times, each run
in a new folder (removed only at the end, see ``benchmarks.overhead``) and after
``os.sync()``, so no run pays for the write-back of the one before; the best run of each
side counts. The driver sums the files each run left in ``images/`` (count and bytes) for
its MB/s. Peak RSS: the highest of the pipeline's runs.

S3: a real S3 server, moto's ``ThreadedMotoServer`` on 127.0.0.1 (a free port) in its own
child process (dummy keys, no AWS configuration read), one bucket, and one pipeline run
with ``out_dir="s3://BUCKET/run-1"`` (the run's local files in a temporary
``PIPELINE_HOME``). The driver lists the keys under ``run-1/images/`` afterwards: one
object per job, their bytes give the MB/s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.emulator_proc import EmulatorSetup
from benchmarks.overhead import Run, run_side
from benchmarks.results import Figure, at_most, info

TARGET_RATIO = 1.1
TARGET_RSS_MB = 250.0
ROUNDS = 2  # floor, pipeline, floor, pipeline: about 4.2 GB written per run
SETUP = EmulatorSetup(real_size_images=True, image_scale=1.0)

DUMMY_KEY_ID = "AKIDUMMYBENCHKEY0000"
DUMMY_SECRET = "dummy-secret-never-real-0123456789abcdef"  # not a secret: moto takes any
_S3_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the driver closes it
server.stop()
"""


def aws_env(endpoint: str, tmp: Path) -> dict[str, str]:
    """Dummy keys, the endpoint, and no AWS configuration files (as the tests set)."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class S3Server:
    """moto's S3 server in a child process; use as a context manager. ``endpoint`` is
    its URL; ``client`` a boto3 client for it. Raises ``RuntimeError`` if it does not
    start."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.endpoint = ""
        self.client: Any = None
        self._proc: subprocess.Popen[str] | None = None

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint!r})"

    def __enter__(self) -> S3Server:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _S3_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=base | aws_env("", self.tmp),
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self._stop()
            raise RuntimeError(f"moto S3 server did not start (said {line!r})")
        self.endpoint = f"http://127.0.0.1:{line}"
        import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints

        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=DUMMY_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def objects(self, bucket: str, prefix: str) -> tuple[int, int]:
        """How many objects there are under ``prefix``, and their bytes."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        sizes = [int(item["Size"]) for page in pages for item in page.get("Contents", [])]
        return len(sizes), sum(sizes)


def _images(folder: Path) -> tuple[int, int]:
    """How many PNGs a run left in ``folder/images``, and their bytes."""
    sizes = [
        e.stat(follow_symlinks=False).st_size
        for e in os.scandir(folder / "images")
        if e.name.endswith(".png")
    ]
    return len(sizes), sum(sizes)


def _fastest(runs: list[Run]) -> int:
    """The index of the fastest run."""
    return min(range(len(runs)), key=lambda k: runs[k].seconds)


def _mb_s(stored: int, seconds: float) -> float:
    return stored / 1e6 / seconds


def measure(jobs: int, s3_jobs: int, log: Callable[[str], None]) -> list[Figure]:
    """Figure 11: ``jobs`` real-size jobs locally (floor vs pipeline), ``s3_jobs`` to S3."""
    with tempfile.TemporaryDirectory(prefix="bench-realsize-") as scratch:
        folders = (Path(scratch) / f"run-{k}" for k in range(100))
        figures = _local(jobs, log, folders)
    with tempfile.TemporaryDirectory(prefix="bench-realsize-s3-") as scratch:
        figures += _s3(s3_jobs, log, Path(scratch))
    return figures


def _local(jobs: int, log: Callable[[str], None], folders: Iterator[Path]) -> list[Figure]:
    runs: dict[str, list[Run]] = {"floor": [], "pipeline": []}
    stored: dict[str, list[tuple[int, int]]] = {"floor": [], "pipeline": []}
    for round_ in range(1, ROUNDS + 1):
        for mode in ("floor", "pipeline"):
            folder = next(folders)
            os.sync()  # the previous run's write-back is not this run's to pay
            run = run_side(mode, jobs, folder, setup=SETUP)
            files, size = _images(folder)
            if files != jobs:
                raise RuntimeError(f"{mode} left {files} images for {jobs} jobs")
            runs[mode].append(run)
            stored[mode].append((files, size))
            log(
                f"  round {round_} {mode:8}: {run.seconds:6.2f} s wall, {run.cpu_s:6.2f} s CPU, "
                f"{run.max_rss_mb:5.0f} MB, {files:,} files of {size / files / 2**20:.3f} MiB "
                f"({size / 1e9:.2f} GB, {_mb_s(size, run.seconds):.0f} MB/s)"
            )
    best = {m: _fastest(runs[m]) for m in runs}
    floor, pipe = runs["floor"][best["floor"]], runs["pipeline"][best["pipeline"]]
    floor_bytes = stored["floor"][best["floor"]][1]
    pipe_bytes = stored["pipeline"][best["pipeline"]][1]
    rss = max(r.max_rss_mb for r in runs["pipeline"])
    details = {
        "jobs": jobs,
        "image_mib": pipe_bytes / jobs / 2**20,
        "floor_s": floor.seconds,
        "pipeline_s": pipe.seconds,
        "runs": [
            {**asdict(r), "files": f, "bytes": b}
            for m in runs
            for r, (f, b) in zip(runs[m], stored[m], strict=True)
        ],
    }
    return [
        at_most(
            "realsize_local_ratio",
            f"11. pipeline / floor time, {jobs:,} x 2 MiB local",
            pipe.seconds / floor.seconds,
            "x",
            TARGET_RATIO,
            details=details,
        ),
        at_most("realsize_local_rss_mb", "11. peak RSS, local", rss, "MB", TARGET_RSS_MB),
        info(
            "realsize_local_pipeline_mb_s",
            "11. pipeline MB/s, local",
            _mb_s(pipe_bytes, pipe.seconds),
            "MB/s",
        ),
        info(
            "realsize_local_floor_mb_s",
            "11. floor MB/s, local",
            _mb_s(floor_bytes, floor.seconds),
            "MB/s",
        ),
    ]


def _s3(jobs: int, log: Callable[[str], None], tmp: Path) -> list[Figure]:
    with S3Server(tmp) as s3:
        bucket = f"pipeline-bench-{uuid.uuid4().hex[:12]}"
        s3.client.create_bucket(Bucket=bucket)
        env = aws_env(s3.endpoint, tmp) | {"PIPELINE_HOME": str(tmp / "home")}
        run = run_side("pipeline", jobs, f"s3://{bucket}/run-1", setup=SETUP, env=env)
        files, size = s3.objects(bucket, "run-1/images/")
    if files != jobs:
        raise RuntimeError(f"S3 run left {files} objects for {jobs} jobs")
    log(
        f"  S3 pipeline: {run.seconds:6.2f} s wall, {run.cpu_s:6.2f} s CPU, "
        f"{run.max_rss_mb:5.0f} MB, {files:,} objects of {size / files / 2**20:.3f} MiB "
        f"({size / 1e9:.2f} GB, {_mb_s(size, run.seconds):.0f} MB/s, "
        f"{jobs / run.seconds:.1f} jobs/s); peak RSS "
        f"{'within' if run.max_rss_mb <= TARGET_RSS_MB else 'ABOVE'} {TARGET_RSS_MB:.0f} MB"
    )
    details = {"jobs": jobs, "objects": files, "bytes": size, "run": asdict(run)}
    return [
        info(
            "realsize_s3_mb_s",
            f"11. S3 throughput, {jobs:,} x 2 MiB",
            _mb_s(size, run.seconds),
            "MB/s",
            details=details,
        ),
        info("realsize_s3_jobs_s", "11. S3 throughput, jobs", jobs / run.seconds, "jobs/s"),
        info("realsize_s3_rss_mb", "11. peak RSS, S3", run.max_rss_mb, "MB"),
    ]
