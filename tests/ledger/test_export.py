"""Dataset export: each format loads with its real readers (``datasets``, ``webdataset``,
pyarrow) and holds every completed image of the batch once, verified, with its record.

The batch is built once, by the public library against the emulator: a prompt with a
template variable and two images a job, one of another aspect ratio, one that fails, one
removed and one edited before the export (so superseded jobs exist, one sharing its file
names with the job that replaced it), each on both providers.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

import pipeline
from pipeline.emulator import EmulatorConfig
from pipeline.errors import UsageError
from pipeline.ledger._export import FORMATS, ExportResult, export_batch
from pipeline.ledger._export_files import HF_FEATURES, Sample
from pipeline.ledger._export_formats import ParquetShard, parquet_name
from tests.ledger._export_support import (
    FIELDS,
    expected_records,
    image_size,
    noise_batch,
    read_parquet,
    read_webdataset,
)

PROVIDERS = {
    "wavespeed": {"requests_per_second": 50, "max_concurrent": 4},
    "skills_video": {"requests_per_second": 50, "max_concurrent": 4, "usd_per_credit": 0.001},
}
FOX = {"id": "fox.v1", "prompt": "a fox, {style}", "vars": {"style": ["oil", "pixel art"]}, "n": 2}
LIGHTHOUSE = {"id": "lighthouse", "prompt": "a lighthouse at dusk", "aspect_ratio": "16:9"}
BROKEN = {"id": "broken", "prompt": "a task that fails [[fail]]"}
EMULATOR = EmulatorConfig(latency_s=0.0, image_scale=0.0625)


def _manifest(*prompts: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "ds",
        "sweep": {"provider": ["wavespeed", "skills_video"]},
        "providers": PROVIDERS,
        "prompts": list(prompts),
    }


@dataclass(frozen=True)
class Batch:
    out: Path
    expected: dict[str, dict[str, Any]]  # file name -> the record its export must carry
    order: list[str]  # file names in the batch's order
    left_out: set[str]  # ids of the failed and superseded jobs

    def copy(self, to: Path) -> Path:
        """A copy of the batch to spoil."""
        shutil.copytree(self.out, to)
        return to


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """The batch of the module docstring, run twice (the second run after the edits)."""
    out = tmp_path_factory.mktemp("export") / "out"
    gone = {"id": "gone", "prompt": "removed before the export"}
    first = _manifest(FOX, LIGHTHOUSE, BROKEN, gone, {"id": "edited", "prompt": "before"})
    assert pipeline.run(first, out=str(out), emulate=EMULATOR).failed == 2
    second = _manifest(FOX, LIGHTHOUSE, BROKEN, {"id": "edited", "prompt": "after the edit"})
    result = pipeline.run(second, out=str(out), emulate=EMULATOR)
    assert (result.completed, result.failed, result.images) == (8, 2, 12)
    expected, order, left_out = expected_records(out)
    assert len(expected) == 12
    return Batch(out, expected, order, left_out)


@pytest.fixture
def hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``datasets``, offline, with every cache under tmp_path (set before its first
    import, and on its config in case something imported it earlier)."""
    home = tmp_path / "hf"
    for name, value in {
        "HF_HOME": home,
        "HF_DATASETS_CACHE": home / "datasets",
        "HF_MODULES_CACHE": home / "modules",
        "HF_HUB_CACHE": home / "hub",
        "XDG_CACHE_HOME": tmp_path / "cache",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets  # type: ignore[import-untyped]

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", home / "modules")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", home / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", home / "extracted")
    module: ModuleType = datasets
    return module


def _decoded(record: dict[str, Any]) -> dict[str, Any]:
    """A tabular record with its JSON-text columns (params, variant) parsed."""
    return {
        **record,
        "params": json.loads(record["params"]),
        "variant": json.loads(record["variant"]),
    }


def _check(records: list[dict[str, Any]], batch: Batch) -> None:
    """Every completed image exactly once, each with exactly its record."""
    assert sorted(r["file_name"] for r in records) == sorted(batch.expected)
    for record in records:
        assert record == batch.expected[record["file_name"]]


def _check_image(data: bytes, record: dict[str, Any]) -> None:
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert image_size(data) == (record["width"], record["height"])


def test_imagefolder_loads_with_datasets(batch: Batch, tmp_path: Path, hf: ModuleType) -> None:
    """imagefolder: datasets loads a train split of every image with its metadata."""
    dest = tmp_path / "dest"
    dest.mkdir()  # an empty directory is a fine destination
    result = export_batch(str(batch.out), "imagefolder", str(dest))
    train = dest / "train"
    written = sorted(p.name for p in train.iterdir())
    assert written == sorted([*batch.expected, "metadata.jsonl"])
    size = sum(p.stat().st_size for p in train.iterdir())
    assert result == ExportResult("imagefolder", str(dest), 12, 13, size)

    ds = hf.load_dataset("imagefolder", data_dir=str(dest), cache_dir=str(tmp_path / "hf-c"))
    assert list(ds) == ["train"]
    split = ds["train"]
    assert isinstance(split.features["image"], hf.Image)
    assert split.num_rows == 12
    for row in split:  # decoded by datasets
        assert row["image"].size == (row["width"], row["height"])
    records = []
    for row in split.cast_column("image", hf.Image(decode=False)):
        image = row.pop("image")
        name = Path(image["path"]).name
        _check_image(Path(image["path"]).read_bytes(), batch.expected[name])
        records.append(_decoded({"file_name": name, **row}))
    _check(records, batch)


def test_webdataset_reads_every_sample(batch: Batch, tmp_path: Path) -> None:
    """webdataset: shards of at most 5 samples; each key dot-free and unique, each
    sample an image and its record."""
    dest = tmp_path / "dest"
    result = export_batch(str(batch.out), "webdataset", str(dest), shard_samples=5)
    shards = sorted(dest.iterdir())
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    size = sum(p.stat().st_size for p in shards)
    assert result == ExportResult("webdataset", str(dest), 12, 3, size)

    raw = read_webdataset(shards, decode=False)
    assert [s["__url__"] for s in raw].count(str(shards[0])) == 5
    keys = [s["__key__"] for s in raw]
    assert len(set(keys)) == 12
    records = []
    for sample in raw:
        assert set(sample) == {"__key__", "__url__", "png", "json"}
        record = json.loads(sample["json"])
        key = record.pop("key")
        assert key == sample["__key__"] == record["file_name"].rpartition(".")[0].replace(".", "~")
        assert "." not in key
        _check_image(sample["png"], record)
        records.append(record)
    _check(records, batch)
    assert any("." in r["job_id"] for r in records)  # the key rule was needed

    for sample in read_webdataset(shards, decode=True):
        record = sample["json"]
        assert sample["png"].size == (record["width"], record["height"])


def test_parquet_reads_with_pyarrow_and_datasets(
    batch: Batch, tmp_path: Path, hf: ModuleType
) -> None:
    """parquet: pyarrow reads rows of image structs and metadata columns; datasets
    loads the image column as an Image feature."""
    dest = tmp_path / "dest"
    result = export_batch(str(batch.out), "parquet", str(dest), shard_samples=5)
    files = sorted(dest.iterdir())
    names = ["data-00000.parquet", "data-00001.parquet", "data-00002.parquet"]
    assert [p.name for p in files] == names
    size = sum(p.stat().st_size for p in files)
    assert result == ExportResult("parquet", str(dest), 12, 3, size)

    schema = pq.read_schema(files[0])
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("image").type == image_type
    assert schema.names == ["image", *FIELDS]
    assert json.loads(schema.metadata[b"huggingface"])["info"]["features"]["image"] == {
        "_type": "Image"
    }
    assert [pq.read_metadata(p).num_rows for p in files] == [5, 5, 2]
    records = []
    for row in read_parquet(files):
        image = row.pop("image")
        assert image["path"] == row["file_name"]
        _check_image(image["bytes"], row)
        records.append(_decoded(row))
    _check(records, batch)

    ds = hf.load_dataset(
        "parquet", data_files=[str(p) for p in files], cache_dir=str(tmp_path / "hf-c")
    )
    split = ds["train"]
    assert isinstance(split.features["image"], hf.Image)
    assert split.num_rows == 12
    assert split.column_names == ["image", *FIELDS]
    for row in split:
        assert row["image"].size == (row["width"], row["height"])


@pytest.mark.parametrize(
    ("fmt", "shard_bytes"),
    [("webdataset", 1), ("webdataset", 16_000), ("parquet", 1), ("parquet", 7_000)],
)
def test_shard_bytes_cut_shards(batch: Batch, tmp_path: Path, fmt: str, shard_bytes: int) -> None:
    """A small shard size cuts more shards, none past it unless one sample is bigger
    alone; every sample is in exactly one of them."""
    dest = tmp_path / "dest"
    result = export_batch(str(batch.out), fmt, str(dest), shard_bytes=shard_bytes)
    shards = sorted(dest.iterdir())
    assert result.files == len(shards) > 1
    if fmt == "webdataset":
        per_shard = [
            [s["json"]["file_name"] for s in read_webdataset([p], decode=True)] for p in shards
        ]
    else:
        per_shard = [[r["file_name"] for r in read_parquet([p])] for p in shards]
    names = [name for shard in per_shard for name in shard]
    assert sorted(names) == sorted(batch.expected)
    assert names == batch.order  # in the batch's order, across shards too
    for path, samples in zip(shards, per_shard, strict=True):
        if shard_bytes == 1:
            assert len(samples) == 1
        else:
            assert path.stat().st_size <= shard_bytes
    if shard_bytes > 1:
        assert max(map(len, per_shard)) > 1


def test_failed_and_superseded_jobs_are_left_out(batch: Batch, tmp_path: Path) -> None:
    """Failed jobs and superseded ones (removed, or edited: archived) are not exported."""
    assert {"broken--wavespeed", "broken--skills-video", "gone--wavespeed"} <= batch.left_out
    assert any(job.startswith("edited--wavespeed~") for job in batch.left_out)
    dest = tmp_path / "dest"
    export_batch(str(batch.out), "parquet", str(dest))
    rows = list(read_parquet(sorted(dest.iterdir())))
    assert not {r["job_id"] for r in rows} & batch.left_out
    edited = [r for r in rows if r["job_id"].startswith("edited")]
    assert len(edited) == 2
    assert {r["prompt"] for r in edited} == {"after the edit"}


def test_cost_is_divided_over_a_jobs_images(batch: Batch, tmp_path: Path) -> None:
    """Each image of a job carries the job's cost divided by its number of images."""
    dest = tmp_path / "dest"
    export_batch(str(batch.out), "parquet", str(dest))
    rows = {r["file_name"]: r for r in read_parquet(sorted(dest.iterdir()))}
    ledger = json.loads((batch.out / "ledger.json").read_text())
    job = next(j for j in ledger["jobs"] if j["id"] == "fox.v1--skills-video-oil")
    assert len(job["images"]) == 2
    for image in job["images"]:
        row = rows[image["path"].rpartition("/")[2]]
        assert row["credits"] == job["cost"]["credits"] / 2
        assert row["cost_usd"] == job["cost"]["usd"] / 2
    wavespeed = rows["fox.v1--wavespeed-oil-1.png"]
    assert (wavespeed["cost_usd"], wavespeed["credits"]) == (0.028, None)


def _spoil_changed(out: Path, name: str) -> str:
    (out / "images" / name).write_bytes((out / "images" / name).read_bytes() + b"\0")
    return "sha256 differs"


def _spoil_missing(out: Path, name: str) -> str:
    (out / "images" / name).unlink()
    return "missing"


@pytest.mark.parametrize("spoil", [_spoil_changed, _spoil_missing], ids=["changed", "missing"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_spoiled_image_is_an_error(
    batch: Batch, tmp_path: Path, fmt: str, spoil: Callable[[Path, str], str]
) -> None:
    """An image that changed or went since the run is an error naming it; the export
    removes what it wrote (the destination it created too)."""
    out = batch.copy(tmp_path / "out")
    name = batch.order[-1]  # the last: shards and files were written before it
    reason = spoil(out, name)
    dest = tmp_path / "dest"
    with pytest.raises(UsageError, match=rf"{name}: .*{reason}"):
        export_batch(str(out), fmt, str(dest), shard_samples=2)
    assert not dest.exists()
    dest.mkdir()
    with pytest.raises(UsageError, match=reason):
        export_batch(str(out), fmt, str(dest), shard_samples=2)
    assert list(dest.iterdir()) == []  # an empty destination given is left empty


def _unknown_format(tmp_path: Path, out: str) -> dict[str, Any]:
    return {"out": out, "fmt": "zip", "to": str(tmp_path / "dest")}


def _no_batch(tmp_path: Path, out: str) -> dict[str, Any]:
    (tmp_path / "nothing").mkdir()
    return {"out": str(tmp_path / "nothing"), "fmt": "parquet", "to": str(tmp_path / "dest")}


def _not_empty(tmp_path: Path, out: str) -> dict[str, Any]:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "data-00000.parquet").write_bytes(b"an earlier export")
    return {"out": out, "fmt": "parquet", "to": str(tmp_path / "dest")}


def _a_file(tmp_path: Path, out: str) -> dict[str, Any]:
    (tmp_path / "dest").write_text("a file")
    return {"out": out, "fmt": "webdataset", "to": str(tmp_path / "dest")}


def _cannot_create(tmp_path: Path, out: str) -> dict[str, Any]:
    (tmp_path / "file").write_text("a file")
    return {"out": out, "fmt": "imagefolder", "to": str(tmp_path / "file" / "dest")}


def _no_shards(tmp_path: Path, out: str) -> dict[str, Any]:
    return {"out": out, "fmt": "webdataset", "to": str(tmp_path / "dest"), "shard_samples": 0}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (_unknown_format, "unknown export format 'zip'"),
        (_no_batch, "no batch here"),
        (_not_empty, "not empty"),
        (_a_file, "exists and is not a directory"),
        (_cannot_create, "cannot export there"),
        (_no_shards, "shard limits must be at least 1"),
    ],
    ids=["unknown-format", "no-batch", "not-empty", "a-file", "cannot-create", "no-shards"],
)
def test_bad_input_is_a_usage_error(
    batch: Batch,
    tmp_path: Path,
    case: Callable[[Path, str], dict[str, Any]],
    message: str,
) -> None:
    """Bad input raises UsageError with a clear message and writes nothing."""
    kwargs = case(tmp_path, str(batch.out))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UsageError, match=message):
        export_batch(**kwargs)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_batch_with_nothing_completed_is_an_error(tmp_path: Path) -> None:
    """A batch without a completed image has nothing to export: UsageError."""
    out = tmp_path / "out"
    result = pipeline.run(_manifest(BROKEN), out=str(out), emulate=EMULATOR)
    assert (result.completed, result.failed) == (0, 2)
    with pytest.raises(UsageError, match="nothing to export"):
        export_batch(str(out), "imagefolder", str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch of 24 incompressible 512x512 PNGs (about 0.8 MB each, 19 MB in all)."""
    out = tmp_path_factory.mktemp("noise") / "out"
    noise_batch(out, images=24, side=512)
    return out


# Measured in a process of its own: tracemalloc counts every thread's allocations, and
# a test process may still have threads of earlier tests at work. An export to a scratch
# folder first loads what an export imports (pyarrow, for one), so only holding counts.
_MEASURE = """
import json, sys, tracemalloc
from pipeline.ledger._export import export_batch
src, fmt, dest = sys.argv[1:]
export_batch(src, fmt, dest + "-warm", shard_bytes=8_000_000)
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
result = export_batch(src, fmt, dest, shard_bytes=8_000_000)
peak = tracemalloc.get_traced_memory()[1] - base
print(json.dumps({"peak": peak, "images": result.images, "bytes": result.bytes}))
"""


@pytest.mark.parametrize("fmt", FORMATS)
def test_memory_stays_at_about_one_image(noise: Path, tmp_path: Path, fmt: str) -> None:
    """Exporting 19 MB of images holds about one of them at a time, never two."""
    largest = max(p.stat().st_size for p in (noise / "images").iterdir())
    child = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(noise), fmt, str(tmp_path / "dest")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(child.stdout)
    assert measured["images"] == 24
    assert measured["bytes"] > 24 * largest * 0.9
    assert measured["peak"] < 2 * largest


def _sample(i: int, image: bytes) -> Sample:
    """Sample ``i`` of a Parquet shard: non-ASCII text, and every fourth field null."""
    name = f"jöb.{i}-1.png"
    record: dict[str, Any] = {
        "file_name": name,
        "job_id": f"jöb.{i}",
        "prompt_id": "fox",
        "prompt": "é" * (i % 5) + " a fox",
        "provider": "wavespeed",
        "model": "kling-image-o3",
        "params": {"n": i, "style": "ölig"},
        "variant": {"style": "ölig"},
        "sha256": hashlib.sha256(image).hexdigest(),
        "width": i,
        "height": -i,
        "cost_usd": i / 7,
        "credits": i / 3,
    }
    for k, field in enumerate(FIELDS[1:]):
        if (i + k) % 4 == 0:
            record[field] = None
    return Sample(name[:-4].replace(".", "~"), name, "png", image, record)


@pytest.mark.parametrize(
    ("rows", "group_rows", "image_bytes"),
    [(1, 100, 10), (40, 3, 700), (12, 100, 1_500_000)],
    ids=["one-row", "many-groups", "many-pages"],
)
def test_parquet_shard_round_trips_through_pyarrow(
    tmp_path: Path, rows: int, group_rows: int, image_bytes: int
) -> None:
    """A Parquet shard with nulls, non-ASCII text, one row group or many, images of many
    pages: pyarrow reads back exactly what went in, and the shard's size is within the
    bound ``size_after`` gave for its last sample (and not far below it)."""
    rng = random.Random(rows)
    shard = ParquetShard(tmp_path, 0, group_rows=group_rows)
    expected = []
    bound = 0
    for i in range(rows):
        sample = _sample(i, rng.randbytes(image_bytes * (i % 3 + 1) // 2))
        bound = shard.size_after(sample)
        shard.add(sample)
        expected.append(
            {"image": {"bytes": sample.data, "path": sample.file_name}, **sample.flat()}
        )
    size = shard.close()
    path = tmp_path / parquet_name(0)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.stat().st_size == size <= bound
    groups = -(-rows // group_rows)
    assert bound - size < 2048 * groups
    assert pq.read_table(path).to_pylist() == expected
    assert pq.read_metadata(path).num_row_groups == groups
    assert pq.read_schema(path).metadata == {b"huggingface": HF_FEATURES.encode()}


def test_parquet_shard_holds_back_one_row_group(tmp_path: Path) -> None:
    """A row group ends once its images reach the group's bytes; until then it waits as
    Arrow data, the only data the shard holds (the caller's images can go)."""
    rng = random.Random(3)
    shard = ParquetShard(tmp_path, 0, group_bytes=2_000_000)
    base = pa.total_allocated_bytes()
    held = []
    for i in range(12):
        shard.add(_sample(i, rng.randbytes(600_000)))
        held.append(pa.total_allocated_bytes() - base)
    shard.close()
    assert 3 * 600_000 < max(held) < 3 * 600_000 + 64 * 1024
    metadata = pq.read_metadata(tmp_path / parquet_name(0))
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [4, 4, 4]


def test_the_library_exports_as_the_command_line_does(batch: Batch, tmp_path: Path) -> None:
    """``pipeline.export`` (positional or by keyword, paths or strings) is the exporter:
    the same result, the same files."""
    first = pipeline.export(batch.out, "webdataset", tmp_path / "a")
    second = pipeline.export(str(batch.out), format="webdataset", to=str(tmp_path / "b"))
    assert isinstance(first, pipeline.ExportResult)
    assert (first.images, first.files, first.bytes) == (second.images, second.files, second.bytes)
    assert first.images == 12
    assert (tmp_path / "a" / "shard-000000.tar").read_bytes() == (
        tmp_path / "b" / "shard-000000.tar"
    ).read_bytes()
