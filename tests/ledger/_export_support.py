"""Helpers of the export tests: the real readers of each format, and a batch of large
images for the memory test.

Exports are read only with the formats' own readers (``datasets``, ``webdataset``,
``pyarrow``, Pillow), never with the product's code; what they must hold comes from the
batch's ledger.json and its image files.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import webdataset as wds  # type: ignore[import-untyped]
from PIL import Image
from webdataset import tariterators

from pipeline.jobs import Job, JobParams
from pipeline.store._sqlite import SqliteStore

# The record the export writes for each image (besides the image itself).
FIELDS = (
    "file_name",
    "job_id",
    "prompt_id",
    "prompt",
    "provider",
    "model",
    "params",
    "variant",
    "sha256",
    "width",
    "height",
    "cost_usd",
    "credits",
)


def expected_records(out: Path) -> tuple[dict[str, dict[str, Any]], list[str], set[str]]:
    """From the batch's ledger.json and images: the record each exported image must carry
    (by file name), the file names in the batch's order, and the ids of the jobs that must
    be left out (failed or superseded)."""
    ledger = json.loads((out / "ledger.json").read_text())
    expected: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    left_out: set[str] = set()
    for job in ledger["jobs"]:
        if job["status"] != "completed" or "superseded" in job.get("flags", []):
            left_out.add(job["id"])
            continue
        n = len(job["images"])
        usd, credits = job["cost"]["usd"], job["cost"]["credits"]
        for image in job["images"]:
            name = image["path"].rpartition("/")[2]
            digest = hashlib.sha256((out / image["path"]).read_bytes()).hexdigest()
            assert digest == image["sha256"]
            order.append(name)
            expected[name] = {
                "file_name": name,
                "job_id": job["id"],
                "prompt_id": job["prompt_id"],
                "prompt": job["prompt"],
                "provider": job["provider"],
                "model": job["model"],
                "params": job["params"],
                "variant": job["variant"],
                "sha256": digest,
                "width": image["width"],
                "height": image["height"],
                "cost_usd": None if usd is None else usd / n,
                "credits": None if credits is None else credits / n,
            }
    return expected, order, left_out


def image_size(data: bytes) -> tuple[int, int]:
    """Decode ``data`` fully with Pillow; its (width, height)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def read_webdataset(shards: list[Path], *, decode: bool) -> list[dict[str, Any]]:
    """Every sample of ``shards``, as the webdataset library groups (and, with
    ``decode``, decodes: images to PIL, json to objects) them. The shards are opened
    here and closed again (the library's own opener leaves its files to the collector)."""
    with ExitStack() as stack:
        sources = [{"url": str(p), "stream": stack.enter_context(p.open("rb"))} for p in shards]
        stages: list[Any] = [tariterators.tar_file_expander, tariterators.group_by_keys]
        if decode:
            stages.append(wds.decode("pil"))
        return list(wds.DataPipeline(lambda: iter(sources), *stages))


def read_parquet(files: list[Path]) -> Iterator[dict[str, Any]]:
    """Every row of the Parquet ``files``, as pyarrow reads them."""
    for path in files:
        yield from pq.read_table(path).to_pylist()


async def _noise_batch(out: Path, images: int, side: int) -> None:
    store = await SqliteStore.open(out / "state.db")
    try:
        jobs = [
            Job(
                id=f"noise-{i}",
                prompt_id="noise",
                provider="wavespeed",
                prompt="noise",
                params=JobParams(),
            )
            for i in range(images)
        ]
        await store.sync_batch(jobs, {"wavespeed": "kling-image-o3"})
        rng = random.Random(7)
        (out / "images").mkdir()
        for job in jobs:
            buf = io.BytesIO()
            Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(buf, "PNG")
            data = buf.getvalue()
            path = f"images/{job.id}-1.png"
            (out / path).write_bytes(data)
            image = {
                "path": path,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "width": side,
                "height": side,
                "format": "png",
            }
            cost = {"usd": 0.028, "credits": None, "basis": "price_table"}
            await store.mark_completed(
                job.id,
                at="2026-01-01T00:00:00Z",
                latency_s=1.0,
                images=[image],
                cost=cost,
                usage={},
            )
    finally:
        await store.close()


def noise_batch(out: Path, *, images: int, side: int) -> None:
    """A completed batch at ``out`` of ``images`` incompressible PNGs ``side`` pixels
    square (written straight into a state, as a run would leave it)."""
    out.mkdir(parents=True)
    anyio.run(_noise_batch, out, images, side)
