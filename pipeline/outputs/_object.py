"""An object store as the output: ``s3://bucket/prefix`` (also ``gs://``, ``az://``), via obstore.

Layout: the same relative paths as a local folder, under the URL's prefix:
``prefix/images/<stem>.<ext>`` and ``prefix/ledger.json``.

Store and credentials (``_object_url``): obstore's store for the URL, configured from
each store's standard environment: for S3 ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``;
``GOOGLE_*`` for GCS, ``AZURE_*`` for Azure. Credentials are never part of the URL (one
with a user or a query is refused), of ``location`` or of any message. obstore retries
throttled, 5xx and dropped requests a few times itself before an error reaches us.

Images (``fetch``): the body is streamed and checked by ``Fetcher`` (size cap,
Content-Length, magic bytes, end marker, sha256) into a ``SpilledBody`` (memory up to
2.25 MiB, then an anonymous temporary file), its width and height are read from its
header, and only then is anything sent to the store, at once under the final name
(``_object_upload``): a conditional create (If-None-Match) up to 8 MiB, a multipart
upload above. An object already there with the same sha256 (user metadata) and size is
kept as it is; a different one is replaced deliberately.

Leftovers: nothing is ever created under a temporary key. A body that fails a check is
never sent; a single put is atomic; a multipart upload that fails or is cancelled while
its bytes are handed over is aborted (shielded); once they all are, its completion is
shielded instead. ``kill -9`` in the middle of a multipart upload leaves an *incomplete
multipart upload*: not an object (no list, head or get sees it, so no reader and no
resume can take it for an image), but its parts stay stored, and billed, until aborted.
obstore can neither list nor abort uploads it did not start in this process, so
``sweep()`` cannot remove them and does nothing (the spill files have no name and vanish
with the process). Give the bucket a lifecycle rule (S3 and GCS:
``AbortIncompleteMultipartUpload`` after a day; Azure drops uncommitted blocks after a
week by itself).

Errors (``_object_errors``): a refused write (access denied, credentials rejected, bucket
missing, an operation the store does not support) raises :class:`OutputRefused`
(``location``, ``path``, ``operation``, ``reason``, ``code``; not a ``DownloadError``): no
retry can help and no other image can be stored either, so the engine should stop
submitting and keep the paid tasks waiting. Throttling (503 SlowDown), other 5xx,
timeouts and dropped connections, once obstore's retries are spent, raise
``DownloadError(retryable=True)`` in ``fetch`` (the engine retries the download) and
``OSError`` elsewhere; any other 4xx is a final ``DownloadError``.

Resume (``missing``) lists ``images/`` once, a page (1,000 keys) at a time, instead of a
HEAD per image. ``move`` is copy then delete, only when the source is there and the
target is not (S3 has no copy-if-absent: a HEAD checks the target first). ``ledger.json``
is one put of the whole text (a multipart upload above 8 MiB: atomic for readers either
way); its ``identity`` is the object's ETag (or version).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotSupportedError

from pipeline import _threads
from pipeline.errors import DownloadError
from pipeline.outputs._base import Sizes, StoredImage
from pipeline.outputs._imagecheck import _pillow, check_stem
from pipeline.outputs._local import DEFAULT_MAX_BYTES, EXTENSIONS, SPILL_BYTES
from pipeline.outputs._object_body import SpilledBody
from pipeline.outputs._object_errors import (
    OutputRefused,
    fault_of,
    other_error,
    refusal,
    written,
)
from pipeline.outputs._object_upload import (
    MULTIPART_ABOVE,
    PART_BYTES,
    PARTS_IN_FLIGHT,
    upload_image,
)
from pipeline.outputs._object_url import open_store

if TYPE_CHECKING:
    import aiohttp
    from obstore import Attributes
    from obstore.store import ObjectStore, RetryConfig

    from pipeline.outputs._fetch import Fetcher

__all__ = ["ObjectStoreOutput", "OutputRefused", "open_store"]

IMAGES = "images"


class ObjectStoreOutput:
    """Images and ledger.json as objects under ``url``. Safe to share between tasks.

    ``session``: downloads go through it (created, and closed by ``aclose``, when not
    given). ``store``: an obstore store to use instead of the one ``url`` names (its own
    prefix applies; ``url`` is then only the location shown in messages).
    ``retry_config``: obstore's retries for the store opened from ``url`` (``RETRY``).
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        store: ObjectStore | None = None,
        retry_config: RetryConfig | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 120.0,
        spill_bytes: int = SPILL_BYTES,
    ) -> None:
        if store is None:
            store, url = open_store(url, retry_config=retry_config)
        self._store = store
        self._location = url
        self._session = session
        self._owns_session = session is None
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._spill = spill_bytes
        self._fetcher: Fetcher | None = None

    def __repr__(self) -> str:
        return f"ObjectStoreOutput({self._location!r})"

    @property
    def location(self) -> str:
        return self._location

    def _http(self) -> Fetcher:
        if self._fetcher is None:
            import aiohttp

            from pipeline.outputs._fetch import Fetcher

            _pillow()
            if self._session is None:
                self._session = aiohttp.ClientSession(auto_decompress=False, trust_env=False)
            self._fetcher = Fetcher(
                self._session, max_bytes=self._max_bytes, timeout_s=self._timeout_s
            )
        return self._fetcher

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._fetcher = None

    # -- images ------------------------------------------------------------------------

    async def fetch(self, url: str, stem: str) -> StoredImage:
        """See ``Output.fetch``; nothing reaches the store before every check passed.
        Raises ``DownloadError`` (retryable for network faults, truncation, throttling and
        5xx) or :class:`OutputRefused`."""
        check_stem(stem)
        fetcher = self._http()
        body = SpilledBody(self._spill)
        try:
            try:
                got = await fetcher.stream(url, body)
                # The extension follows the bytes, as in a local folder.
                path = f"{IMAGES}/{stem}.{EXTENSIONS[got.format]}"
                width, height = await body.dimensions(got.format)
            except OSError as exc:
                raise DownloadError(
                    f"cannot hold the image locally: {exc.strerror or exc}",
                    url=url,
                    retryable=False,
                ) from exc
            image = StoredImage(
                path=path,
                sha256=got.sha256,
                bytes=got.size,
                width=width,
                height=height,
                format=got.format,
                source_url=url,
            )
            await upload_image(self._store, self._location, image, body)
        finally:
            body.close()
        return image

    async def discard(self, image: StoredImage) -> None:
        with contextlib.suppress(Exception):
            await obstore.delete_async(self._store, image.path)

    async def sweep(self) -> None:
        """Nothing to do: no object is ever written under a temporary name, and the spill
        files have no name. An incomplete multipart upload left by ``kill -9`` is not an
        object, and obstore cannot list or abort it (see the module docstring)."""

    # -- resume and edits --------------------------------------------------------------

    async def missing(self, jobs: Sequence[tuple[str, Sizes]]) -> set[str]:
        """See ``Output.missing``: one listing of ``images/`` (a page at a time), then the
        recorded sizes are compared (in a worker thread). A bucket that does
        not exist holds nothing: every job is missing. Raises :class:`OutputRefused`
        (listing refused) or ``OSError``."""
        if not jobs:
            return set()
        sizes: dict[str, int] = {}
        try:
            async for page in obstore.list(self._store, f"{IMAGES}/", chunk_size=1000):
                for meta in page:
                    sizes[meta["path"]] = meta["size"]
        except Exception as exc:
            if fault_of(exc).kind == "no_bucket":
                return {job_id for job_id, _ in jobs}
            raise other_error(
                exc, location=self._location, path=f"{IMAGES}/", operation="list"
            ) from None
        return await _threads.run_sync(_missing_from, jobs, sizes)

    async def move(self, path: str, new_path: str) -> bool:
        """See ``Output.move``: copy (only if ``new_path`` is absent) then delete."""
        try:
            if not await self._exists(path):
                return False
            try:
                await obstore.copy_async(self._store, path, new_path, overwrite=False)
            except AlreadyExistsError:
                return False
            except NotSupportedError:
                # S3 cannot copy-if-absent: check, then copy.
                if await self._exists(new_path):
                    return False
                await obstore.copy_async(self._store, path, new_path)
            await obstore.delete_async(self._store, path)
        except FileNotFoundError:
            return False  # the source went away meanwhile
        except Exception as exc:
            raise other_error(exc, location=self._location, path=path, operation="copy") from None
        return True

    async def _exists(self, path: str) -> bool:
        try:
            await obstore.head_async(self._store, path)
        except FileNotFoundError:
            return False
        return True

    # -- ledger.json (blocking: worker threads) -----------------------------------------

    def write_atomic(self, name: str, pieces: Iterable[str]) -> None:
        """One put of the whole text, or above 8 MiB a multipart upload fed a part at a
        time: readers see the old or the new object. Raises :class:`OutputRefused` or
        ``OSError``."""
        chunks = _encoded(pieces, PART_BYTES)
        head: list[bytes] = []
        size = 0
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size > MULTIPART_ABOVE:
                break
        attributes: Attributes = {"Content-Type": "application/json"}
        try:
            if size <= MULTIPART_ABOVE:  # every piece is in ``head``
                data = b"".join(head)
                obstore.put(self._store, name, data, attributes=attributes, use_multipart=False)
            else:
                obstore.put(
                    self._store,
                    name,
                    itertools.chain(head, chunks),
                    attributes=attributes,
                    use_multipart=True,
                    chunk_size=PART_BYTES,
                    max_concurrency=PARTS_IN_FLIGHT,
                )
        except (BaseError, OSError, ValueError) as exc:
            fault = written(fault_of(exc))
            if fault.refused:
                raise refusal(
                    fault, location=self._location, path=name, operation="write"
                ) from None
            raise OSError(f"{self._location}: cannot write {name}: {fault.describe()}") from None

    def read_bytes(self, path: str) -> bytes:
        try:
            return bytes(obstore.get(self._store, path).bytes())
        except Exception as exc:
            raise other_error(exc, location=self._location, path=path, operation="read") from None

    def identity(self, name: str) -> str | None:
        """The object's ETag (its version when the store gives no ETag); None when absent.
        Raises :class:`OutputRefused` or ``OSError``."""
        try:
            meta = obstore.head(self._store, name)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise other_error(exc, location=self._location, path=name, operation="read") from None
        return meta["e_tag"] or meta["version"] or f"{meta['size']}@{meta['last_modified']}"


def _encoded(pieces: Iterable[str], size: int) -> Iterator[bytes]:
    """``pieces`` as UTF-8, in buffers of at least ``size`` bytes (the last may be less;
    none at all for no text)."""
    held: list[bytes] = []
    count = 0
    for piece in pieces:
        data = piece.encode()
        held.append(data)
        count += len(data)
        if count >= size:
            yield b"".join(held)
            held.clear()
            count = 0
    if held:
        yield b"".join(held)


def _missing_from(jobs: Sequence[tuple[str, Sizes]], sizes: dict[str, int]) -> set[str]:
    """The jobs whose images are not all listed with their recorded size. Blocking (CPU)."""
    return {
        job_id
        for job_id, images in jobs
        if not images or any(sizes.get(path) != size for path, size in images)
    }
