"""The object-store output against a real S3 server (moto, see conftest.py): images
verified before they are stored, conditional and multipart writes, refusals and
throttling, and no leftovers after failures, cancellation or kill -9.

Throttling and refusals come from a small reverse proxy in front of moto (a real aiohttp
server on 127.0.0.1) that answers some requests the way a busy or strict S3 does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import signal
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import obstore
import obstore.store
import pytest
from aiohttp import web
from PIL import Image

from pipeline.emulator import EmulatorServer
from pipeline.errors import DownloadError, UsageError
from pipeline.outputs._base import StoredImage
from pipeline.outputs._object import ObjectStoreOutput, OutputRefused
from pipeline.store import image_sizes
from tests.outputs.conftest import DUMMY_KEY_ID, DUMMY_SECRET, Bucket
from tests.outputs.s3_front import S3Front, serve_local

pytestmark = pytest.mark.anyio

T2I = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
NO_RETRIES: Any = {"max_retries": 0}
_CHUNK = 256 * 1024


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """An incompressible PNG: its file is about 3 bytes a pixel."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc


def bomb_png() -> bytes:
    """A complete, well-formed 200-byte PNG declaring 30,000 x 30,000 pixels."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


# -- servers -----------------------------------------------------------------------------


class ImageServer:
    """Serves noise PNGs (streamed), cut ones, a page and a bomb, on 127.0.0.1."""

    def __init__(self) -> None:
        self.base_url = ""
        self._bodies: dict[tuple[int, int, int], bytes] = {}

    def body(self, width: int, height: int, seed: int = 0) -> bytes:
        key = (width, height, seed)
        if key not in self._bodies:
            self._bodies[key] = noise_png(width, height, seed)
        return self._bodies[key]

    def url(self, kind: str, width: int = 40, height: int = 30, seed: int = 0) -> str:
        self.body(width, height, seed)  # made now, not while a test measures
        return f"{self.base_url}/{kind}/{width}x{height}-{seed}.png"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "page":
            return web.Response(text="<html>no image</html>", content_type="text/html")
        if kind == "bomb":
            return web.Response(body=bomb_png(), content_type="image/png")
        size, _, seed = request.match_info["name"].removesuffix(".png").partition("-")
        width, _, height = size.partition("x")
        data = self.body(int(width), int(height), int(seed))
        if kind == "noise":
            return await _stream(request, data, len(data))
        if kind == "cut":  # promises the whole length, sends half, closes
            await _stream(request, data[: len(data) // 2], len(data))
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=499)
        # "cut-clean": no Content-Length, half the image, a clean end of body
        return await _stream(request, data[: len(data) // 2], None)


async def _stream(request: web.Request, data: bytes, length: int | None) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    if length is not None:
        resp.content_length = length
    await resp.prepare(request)
    view = memoryview(data)
    for start in range(0, len(data), _CHUNK):
        await resp.write(view[start : start + _CHUNK])
    if length is None or length == len(data):
        await resp.write_eof()
    return resp


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for downloads."""
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    """The image server on 127.0.0.1:0."""
    server = ImageServer()
    app = web.Application()
    app.router.add_get("/{kind}/{name}", server.handle)
    runner, server.base_url = await serve_local(app)
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
def output(bucket: Bucket, session: aiohttp.ClientSession) -> ObjectStoreOutput:
    """The output at s3://<bucket>/run (the endpoint and keys from the environment)."""
    return ObjectStoreOutput(bucket.url(), session=session)


async def emulated_image_url(emulator: EmulatorServer, session: aiohttp.ClientSession) -> str:
    """The URL of a finished WaveSpeed task's image, from the emulator."""
    auth = {"Authorization": "Bearer test-key"}
    body = {"prompt": "a red fox", "aspect_ratio": "16:9", "resolution": "1k", "num_images": 1}
    async with session.post(emulator.base_url + T2I, json=body, headers=auth) as resp:
        submitted = await resp.json()
    async with session.get(submitted["data"]["urls"]["get"], headers=auth) as resp:
        result = await resp.json()
    assert result["data"]["status"] == "completed"
    url = result["data"]["outputs"][0]
    assert isinstance(url, str)
    return url


def assert_stored(bucket: Bucket, image: StoredImage, source: bytes) -> None:
    """The object under ``image.path`` is ``source``, with the facts ``image`` records."""
    data, metadata = bucket.get(f"run/{image.path}")
    assert data == source
    assert image.sha256 == hashlib.sha256(data).hexdigest() == metadata["sha256"]
    assert image.bytes == len(data)
    with Image.open(io.BytesIO(data)) as img:
        assert (image.width, image.height) == img.size


def _recorded(*images: StoredImage | tuple[str, int]) -> list[tuple[str, int]]:
    """A job's images as a resume reads them from the run state: path and bytes."""
    pairs = [(i.path, i.bytes) if isinstance(i, StoredImage) else i for i in images]
    return image_sizes(json.dumps([{"path": path, "bytes": size} for path, size in pairs]))


# -- images ------------------------------------------------------------------------------


async def test_emulator_image_is_stored_verified(
    emulator: EmulatorServer,
    session: aiohttp.ClientSession,
    output: ObjectStoreOutput,
    bucket: Bucket,
) -> None:
    """An emulator image lands as images/<stem>.png with its sha256, size and dimensions."""
    url = await emulated_image_url(emulator, session)
    async with session.get(url) as resp:
        served = await resp.read()
    stored = await output.fetch(url, "job-1")
    assert (stored.path, stored.format, stored.source_url) == ("images/job-1.png", "png", url)
    assert_stored(bucket, stored, served)
    assert await anyio.to_thread.run_sync(output.read_bytes, stored.path) == served
    head = bucket.client.head_object(Bucket=bucket.name, Key="run/images/job-1.png")
    assert head["ContentType"] == "image/png"
    assert bucket.keys() == ["run/images/job-1.png"]


@pytest.mark.parametrize(
    ("width", "height", "multipart"),
    [(400, 300, False), (1800, 1800, True)],
    ids=["spilled-single-put", "multipart"],
)
async def test_spilled_and_multipart_bodies_are_stored_whole(
    images: ImageServer,
    output: ObjectStoreOutput,
    bucket: Bucket,
    width: int,
    height: int,
    multipart: bool,
) -> None:
    """Bodies past the spill size (single put) or past 8 MiB (multipart) are stored exactly."""
    stored = await output.fetch(images.url("noise", width, height), "big")
    assert_stored(bucket, stored, images.body(width, height))
    etag = bucket.client.head_object(Bucket=bucket.name, Key="run/images/big.png")["ETag"]
    assert ("-" in etag) is multipart  # a multipart object's ETag ends in -<parts>
    assert bucket.uploads() == []


@pytest.mark.parametrize(
    ("kind", "retryable", "match"),
    [
        ("cut", True, "truncated|download failed"),
        ("cut-clean", True, "truncated"),
        ("page", False, "not a png"),
        ("bomb", False, "not a readable image"),
    ],
)
@pytest.mark.parametrize("size", [(40, 30), (1800, 1800)], ids=["small", "large"])
async def test_bad_bodies_are_never_stored(
    images: ImageServer,
    output: ObjectStoreOutput,
    bucket: Bucket,
    kind: str,
    retryable: bool,
    match: str,
    size: tuple[int, int],
) -> None:
    """Truncated, cut, non-image and bomb bodies raise and leave no object and no upload."""
    with pytest.raises(DownloadError, match=match) as info:
        await output.fetch(images.url(kind, *size), "bad")
    assert info.value.retryable is retryable
    assert bucket.keys() == []
    assert bucket.uploads() == []


@pytest.mark.parametrize("size", [(40, 30), (1800, 1800)], ids=["single-put", "multipart"])
async def test_same_image_is_kept_and_a_new_one_replaces_it(
    images: ImageServer, output: ObjectStoreOutput, bucket: Bucket, size: tuple[int, int]
) -> None:
    """Fetching the same bytes again writes nothing; different bytes replace the object."""
    bucket.client.put_bucket_versioning(
        Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
    )

    def versions() -> int:
        reply = bucket.client.list_object_versions(Bucket=bucket.name)
        return len(reply.get("Versions", []))

    first = await output.fetch(images.url("noise", *size, seed=1), "job-1")
    again = await output.fetch(images.url("noise", *size, seed=1), "job-1")
    assert again == first
    assert versions() == 1
    other = await output.fetch(images.url("noise", *size, seed=2), "job-1")
    assert other.sha256 != first.sha256
    assert_stored(bucket, other, images.body(*size, seed=2))
    assert versions() == 2


async def test_large_image_is_uploaded_with_bounded_memory(
    images: ImageServer, output: ObjectStoreOutput, bucket: Bucket
) -> None:
    """A 54 MB image is stored with under half its size in Python memory (moto is apart)."""
    url = images.url("noise", 4500, 4000)
    body = images.body(4500, 4000)
    tracemalloc.start()
    try:
        stored = await output.fetch(url, "huge")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(body) // 2, (peak, len(body))
    assert_stored(bucket, stored, body)
    etag = bucket.client.head_object(Bucket=bucket.name, Key="run/images/huge.png")["ETag"]
    assert etag.endswith('-11"')  # 54 MB in 5 MiB parts


# -- refusals and throttling ----------------------------------------------------------------


async def test_missing_bucket_refuses_the_write(
    images: ImageServer, s3_env: dict[str, str], session: aiohttp.ClientSession
) -> None:
    """A missing bucket refuses image and ledger writes: OutputRefused, no credentials."""
    output = ObjectStoreOutput("s3://pipeline-no-such-bucket/run/", session=session)
    with pytest.raises(OutputRefused) as info:
        await output.fetch(images.url("noise"), "job-1")
    refused = info.value
    assert refused.location == "s3://pipeline-no-such-bucket/run"
    assert (refused.path, refused.operation, refused.code) == (
        "images/job-1.png",
        "write",
        "NoSuchBucket",
    )
    assert "does not exist" in str(refused)
    assert refused.retryable is False
    with pytest.raises(OutputRefused):
        await anyio.to_thread.run_sync(output.write_atomic, "ledger.json", ["{}"])
    for text in (str(refused), repr(refused.args)):
        assert DUMMY_SECRET not in text
        assert DUMMY_KEY_ID not in text


async def test_access_denied_refuses_the_write(
    images: ImageServer, front: S3Front, bucket: Bucket, session: aiohttp.ClientSession
) -> None:
    """A 403 AccessDenied on the put raises OutputRefused, not a retryable error."""
    front.deny_writes = True
    output = ObjectStoreOutput(bucket.url(), session=session, retry_config=NO_RETRIES)
    with pytest.raises(OutputRefused, match="access denied") as info:
        await output.fetch(images.url("noise"), "job-1")
    assert info.value.code == "AccessDenied"
    assert not isinstance(info.value, DownloadError)
    assert bucket.keys() == []


async def test_throttled_put_is_retryable_then_succeeds(
    images: ImageServer, front: S3Front, bucket: Bucket, session: aiohttp.ClientSession
) -> None:
    """503 SlowDown on the put raises a retryable DownloadError; the retry stores it."""
    front.slow_puts = 1
    output = ObjectStoreOutput(bucket.url(), session=session, retry_config=NO_RETRIES)
    url = images.url("noise")
    with pytest.raises(DownloadError, match="HTTP 503 SlowDown") as info:
        await output.fetch(url, "job-1")
    assert info.value.retryable is True
    assert bucket.keys() == []
    stored = await output.fetch(url, "job-1")
    assert_stored(bucket, stored, images.body(40, 30))


async def test_obstore_retries_absorb_a_short_throttle(
    images: ImageServer, front: S3Front, bucket: Bucket, session: aiohttp.ClientSession
) -> None:
    """With the default retries, one 503 SlowDown is retried by obstore itself."""
    front.slow_puts = 1
    output = ObjectStoreOutput(bucket.url(), session=session)
    stored = await output.fetch(images.url("noise"), "job-1")
    assert_stored(bucket, stored, images.body(40, 30))
    assert front.puts == 2


@pytest.mark.parametrize("part", [1, 2], ids=["while-writing", "while-completing"])
async def test_failed_part_upload_is_aborted(
    images: ImageServer,
    front: S3Front,
    bucket: Bucket,
    session: aiohttp.ClientSession,
    part: int,
) -> None:
    """A throttled part fails the fetch retryably and aborts the upload; a retry stores it."""
    front.slow_parts = {part}
    output = ObjectStoreOutput(bucket.url(), session=session, retry_config=NO_RETRIES)
    url = images.url("noise", 1800, 1800)  # 9.7 MB: two parts
    with pytest.raises(DownloadError) as info:
        await output.fetch(url, "job-1")
    assert info.value.retryable is True
    assert bucket.keys() == []
    assert bucket.uploads() == []
    stored = await output.fetch(url, "job-1")
    assert_stored(bucket, stored, images.body(1800, 1800))


async def _cancel_at_held_part(output: ObjectStoreOutput, front: S3Front, url: str) -> bool:
    """Fetch ``url``, cancel the fetch once a held part reaches the proxy, then let the
    parts through; whether the cancellation was caught."""
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def fetch() -> None:
            with scope:
                await output.fetch(url, "job-1")

        tg.start_soon(fetch)
        with anyio.fail_after(60):  # a guard, not a measurement
            await front.part_seen.wait()
        scope.cancel()
        front.release.set()
    return scope.cancelled_caught


async def test_upload_cancelled_while_writing_is_aborted(
    images: ImageServer, front: S3Front, bucket: Bucket, session: aiohttp.ClientSession
) -> None:
    """A fetch cancelled while parts are handed over aborts its upload: nothing is left."""
    front.hold_from_part = 1  # parts 1 and 2 held: the third cannot be handed over
    output = ObjectStoreOutput(bucket.url(), session=session, retry_config=NO_RETRIES)
    url = images.url("noise", 2600, 2600)  # 20 MB: four parts
    assert await _cancel_at_held_part(output, front, url) is True
    assert bucket.keys() == []
    assert bucket.uploads() == []


async def test_upload_cancelled_while_completing_finishes(
    images: ImageServer, front: S3Front, bucket: Bucket, session: aiohttp.ClientSession
) -> None:
    """Cancelled once every byte is handed over, the upload completes: one whole object."""
    front.hold_from_part = 2
    output = ObjectStoreOutput(bucket.url(), session=session, retry_config=NO_RETRIES)
    url = images.url("noise", 1800, 1800)  # 9.7 MB: two parts
    await _cancel_at_held_part(output, front, url)
    assert bucket.keys() == ["run/images/job-1.png"]
    assert bucket.get("run/images/job-1.png")[0] == images.body(1800, 1800)
    assert bucket.uploads() == []


_KILLED_CHILD = """
import sys
import anyio
from pipeline.outputs._object import ObjectStoreOutput

async def main() -> None:
    output = ObjectStoreOutput(sys.argv[1], retry_config={"max_retries": 0})
    try:
        await output.fetch(sys.argv[2], "killed")
    finally:
        await output.aclose()

anyio.run(main)
"""


async def test_kill_9_mid_upload_leaves_no_object(
    images: ImageServer, front: S3Front, bucket: Bucket, s3_env: dict[str, str]
) -> None:
    """kill -9 mid-upload leaves no object (an invisible upload only); resume sees it missing."""
    front.hold_from_part = 1
    url = images.url("noise", 1800, 1800)
    env = s3_env | {"AWS_ENDPOINT_URL": front.url, "PATH": "/usr/bin:/bin"}
    async with await anyio.open_process(
        [sys.executable, "-c", _KILLED_CHILD, bucket.url(), url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as child:
        with anyio.fail_after(60):  # a guard, not a measurement
            await front.part_seen.wait()
        child.kill()
        assert await child.wait() == -signal.SIGKILL
    front.release.set()
    assert bucket.keys() == []
    assert bucket.uploads() == ["run/images/killed.png"]  # invisible to list/head/get
    output = ObjectStoreOutput(bucket.url())
    await output.sweep()
    size = len(images.body(1800, 1800))
    assert await output.missing([("killed", _recorded(("images/killed.png", size)))]) == {"killed"}


# -- ledger, resume, edits ----------------------------------------------------------------


async def test_ledger_write_read_and_identity(output: ObjectStoreOutput, bucket: Bucket) -> None:
    """ledger.json reads back whole; its identity is None, then its ETag, new per content."""
    assert await anyio.to_thread.run_sync(output.identity, "ledger.json") is None
    with pytest.raises(FileNotFoundError):
        await anyio.to_thread.run_sync(output.read_bytes, "ledger.json")
    await anyio.to_thread.run_sync(output.write_atomic, "ledger.json", ['{"jobs": ', "[]}"])
    assert await anyio.to_thread.run_sync(output.read_bytes, "ledger.json") == b'{"jobs": []}'
    first = await anyio.to_thread.run_sync(output.identity, "ledger.json")
    head = bucket.client.head_object(Bucket=bucket.name, Key="run/ledger.json")
    assert first == head["ETag"]
    assert head["ContentType"] == "application/json"
    await anyio.to_thread.run_sync(output.write_atomic, "ledger.json", ['{"jobs": [1]}'])
    assert await anyio.to_thread.run_sync(output.identity, "ledger.json") not in (first, None)
    assert bucket.keys() == ["run/ledger.json"]


async def test_big_ledger_is_written_in_parts(output: ObjectStoreOutput, bucket: Bucket) -> None:
    """A 12 MB ledger goes up in parts, one under 8 MiB in one put; both read back exactly."""
    pieces = [json.dumps({"id": f"job-{i}", "pad": "x" * 100}) + "\n" for i in range(100_000)]
    await anyio.to_thread.run_sync(output.write_atomic, "ledger.json", iter(pieces))
    data = await anyio.to_thread.run_sync(output.read_bytes, "ledger.json")
    assert data == "".join(pieces).encode()
    assert "-" in bucket.client.head_object(Bucket=bucket.name, Key="run/ledger.json")["ETag"]
    assert bucket.uploads() == []
    small = ["x" * 1_000_000] * 8  # 7.6 MiB in eight pieces
    await anyio.to_thread.run_sync(output.write_atomic, "ledger.json", small)
    assert await anyio.to_thread.run_sync(output.read_bytes, "ledger.json") == b"x" * 8_000_000
    assert "-" not in bucket.client.head_object(Bucket=bucket.name, Key="run/ledger.json")["ETag"]


async def test_missing_checks_presence_and_size(
    images: ImageServer, output: ObjectStoreOutput
) -> None:
    """missing() flags jobs with an absent image, a wrong size or no images at all."""
    one = await output.fetch(images.url("noise", seed=1), "a-1")
    two = await output.fetch(images.url("noise", seed=2), "a-2")
    jobs = [
        ("complete", _recorded(one, two)),
        ("wrong-size", _recorded(one, (two.path, two.bytes + 1))),
        ("absent", _recorded(one, ("images/never.png", 10))),
        ("no-images", image_sizes("[]")),
        ("null", image_sizes("null")),
    ]
    assert await output.missing(jobs) == {"wrong-size", "absent", "no-images", "null"}
    assert await output.missing([]) == set()


async def test_missing_lists_past_the_first_page(output: ObjectStoreOutput, bucket: Bucket) -> None:
    """With more than 1,000 images the listing goes on to the next page."""
    keys = [f"run/images/p{i:04}.png" for i in range(1_001)]  # a page is 1,000 keys
    store = obstore.store.S3Store(bucket.name, client_options={"allow_http": True})
    limiter = anyio.CapacityLimiter(32)

    async def put(key: str) -> None:
        async with limiter:
            await obstore.put_async(store, key, b"12345")

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(put, key)
    jobs = [(f"j{i}", _recorded((key.removeprefix("run/"), 5))) for i, key in enumerate(keys)]
    jobs.append(("gone", _recorded(("images/p9999.png", 5))))
    assert await output.missing(jobs) == {"gone"}


async def test_missing_on_a_missing_bucket_is_everything(s3_env: dict[str, str]) -> None:
    """An output whose bucket does not exist holds nothing: every job is missing."""
    output = ObjectStoreOutput("s3://pipeline-no-such-bucket/run")
    jobs = [("a", _recorded(("images/a-1.png", 5)))]
    assert await output.missing(jobs) == {"a"}


async def test_move_copies_then_deletes(
    images: ImageServer, output: ObjectStoreOutput, bucket: Bucket
) -> None:
    """move() renames an image; with its source gone or its target taken it changes nothing."""
    a = await output.fetch(images.url("noise", seed=1), "old-1")
    b = await output.fetch(images.url("noise", seed=2), "taken-1")
    assert await output.move(a.path, "images/new-1.png") is True
    assert bucket.keys() == ["run/images/new-1.png", "run/images/taken-1.png"]
    assert_stored(bucket, dataclasses.replace(a, path="images/new-1.png"), images.body(40, 30, 1))
    assert await output.move(a.path, "images/other.png") is False
    assert await output.move("images/new-1.png", b.path) is False
    assert bucket.keys() == ["run/images/new-1.png", "run/images/taken-1.png"]
    assert_stored(bucket, b, images.body(40, 30, 2))


async def test_discard_deletes_and_never_raises(
    images: ImageServer, output: ObjectStoreOutput, bucket: Bucket, s3_env: dict[str, str]
) -> None:
    """discard() removes an image; discarding it again, or on a missing bucket, is quiet."""
    stored = await output.fetch(images.url("noise"), "job-1")
    await output.discard(stored)
    assert bucket.keys() == []
    await output.discard(stored)
    await ObjectStoreOutput("s3://pipeline-no-such-bucket/run").discard(stored)


# -- construction --------------------------------------------------------------------------


async def test_location_is_the_url(s3_env: dict[str, str]) -> None:
    """location is the URL as given, without a trailing slash."""
    output = ObjectStoreOutput("s3://some-bucket/a/b/")
    assert output.location == "s3://some-bucket/a/b"
    assert repr(output) == "ObjectStoreOutput('s3://some-bucket/a/b')"
    await output.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "file:///tmp/out",
        "s3://",
        "s3://user:hunter2@some-bucket/run",
        "s3://some-bucket/run?secret=hunter2",
    ],
)
def test_bad_urls_are_usage_errors(url: str, s3_env: dict[str, str]) -> None:
    """A non-object-store URL, or one carrying secrets, is a UsageError not echoing them."""
    with pytest.raises(UsageError) as info:
        ObjectStoreOutput(url)
    assert "hunter2" not in str(info.value)
