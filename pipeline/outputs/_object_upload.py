"""Storing one verified image as an object under its final name, and only there.

- Up to ``MULTIPART_ABOVE`` (8 MiB): one put with ``mode="create"`` (If-None-Match), the
  body read back whole.
- Larger: a multipart upload (obstore's ``open_writer_async``, ``PART_BYTES`` parts, at
  most ``PARTS_IN_FLIGHT`` of them in flight: about 15 MiB of memory whatever the size).
  The object appears only once the upload completes. obstore's multipart API takes no
  precondition, so this path is not conditional: a HEAD just before decides, and a
  writer that got in between would be overwritten (by a complete, verified image).

An object already under the name is a previous attempt of the same image (a run killed
between storing and recording it; a put whose reply was lost, sent again by obstore) or
an older image of a regenerated job. Every image object carries its sha256 as user
metadata (``SHA256_KEY``): same sha256 and size, it is kept and nothing is written;
otherwise it is replaced deliberately, a small one by a put conditional on the ETag just
read (If-Match), so a third writer meanwhile fails the fetch, retryably, rather than
being overwritten.

Failures: a multipart upload whose handing over fails or is cancelled is aborted, in a
shielded scope (its parts would otherwise stay stored, and billed, though invisible).
Once every byte is handed over, what is left (the last part, the completion) is shielded
instead, for at most ``_COMPLETE_S``: a completion dropped halfway could no longer be
aborted, and a finished one is a complete, verified object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import obstore
from obstore.exceptions import AlreadyExistsError

from pipeline.errors import DownloadError
from pipeline.outputs._base import StoredImage
from pipeline.outputs._object_body import SpilledBody
from pipeline.outputs._object_errors import fault_of, write_error

if TYPE_CHECKING:
    from obstore import Attributes, PutMode
    from obstore.store import ObjectStore

MULTIPART_ABOVE = 8 * 1024 * 1024
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part
PARTS_IN_FLIGHT = 2
SHA256_KEY = "sha256"  # user metadata of every image object (x-amz-meta-sha256 on S3)
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_ABORT_S = 30.0  # how long a failed multipart upload may take to abort
_COMPLETE_S = 120.0  # how long the last part and the completion may take, shielded
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Existing:
    """What is under an image's final name already."""

    size: int
    sha256: str | None
    e_tag: str | None
    version: str | None

    def holds(self, image: StoredImage) -> bool:
        return self.size == image.bytes and self.sha256 == image.sha256


async def upload_image(
    store: ObjectStore, location: str, image: StoredImage, body: SpilledBody
) -> None:
    """Store the checked ``body`` as ``image.path``. Raises ``DownloadError`` (retryable
    for throttling, 5xx, network faults and a concurrent writer) or ``OutputRefused``."""
    upload = _Upload(store, location, image)
    if image.bytes <= MULTIPART_ABOVE:
        await upload.single(body)
    else:
        await upload.multipart(body)


class _Upload:
    __slots__ = ("attributes", "image", "location", "store")

    def __init__(self, store: ObjectStore, location: str, image: StoredImage) -> None:
        self.store = store
        self.location = location
        self.image = image
        self.attributes: Attributes = {
            "Content-Type": CONTENT_TYPES[image.format],
            SHA256_KEY: image.sha256,
        }

    def __repr__(self) -> str:
        return f"_Upload({self.location!r}, {self.image.path!r})"

    def error(self, exc: BaseException) -> Exception:
        return write_error(
            exc, location=self.location, path=self.image.path, url=self.image.source_url
        )

    async def single(self, body: SpilledBody) -> None:
        path = self.image.path
        data = await self.local(body.read_all())
        try:
            await obstore.put_async(
                self.store, path, data, mode="create", attributes=self.attributes
            )
            return
        except AlreadyExistsError:
            pass
        except Exception as exc:
            raise self.error(exc) from None
        existing = await self.existing()
        if existing is not None and existing.holds(self.image):
            return
        # Replace exactly the version just looked at; None: it went away meanwhile.
        mode: PutMode = (
            {"e_tag": existing.e_tag, "version": existing.version} if existing else "create"
        )
        try:
            await obstore.put_async(self.store, path, data, mode=mode, attributes=self.attributes)
        except Exception as exc:
            if fault_of(exc).kind in ("not_found", "conflict"):
                # Another writer got in between (replaced or removed it): try again later.
                raise DownloadError(
                    f"{path} was changed by another writer meanwhile", url=self.image.source_url
                ) from None
            raise self.error(exc) from None

    async def multipart(self, body: SpilledBody) -> None:
        existing = await self.existing()
        if existing is not None and existing.holds(self.image):
            return
        await self.local(body.rewind())
        writer = obstore.open_writer_async(
            self.store,
            self.image.path,
            attributes=self.attributes,
            buffer_size=PART_BYTES,
            max_concurrency=PARTS_IN_FLIGHT,
        )
        try:
            while chunk := await self.local(body.read(PART_BYTES)):
                await writer.write(chunk)
        except BaseException as exc:
            # Abort even when cancelled: the parts would stay stored (and billed).
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(_ABORT_S),
                contextlib.suppress(Exception),
            ):
                await writer.__aexit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, Exception) and not isinstance(exc, DownloadError):
                raise self.error(exc) from None
            raise
        try:
            # Every byte is handed over: let the rest finish (see the module docstring).
            with anyio.CancelScope(shield=True), anyio.fail_after(_COMPLETE_S):
                await writer.close()
        except Exception as exc:
            raise self.error(exc) from None

    async def existing(self) -> _Existing | None:
        """The object under the image's path (None: there is none)."""
        try:
            got = await obstore.get_async(self.store, self.image.path, options={"head": True})
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self.error(exc) from None
        meta = got.meta
        return _Existing(
            meta["size"], got.attributes.get(SHA256_KEY), meta["e_tag"], meta["version"]
        )

    async def local(self, call: Awaitable[T]) -> T:
        """Await a read of the spilled body: a local file error is final."""
        try:
            return await call
        except OSError as exc:
            raise DownloadError(
                f"cannot read the image back: {exc.strerror or exc}",
                url=self.image.source_url,
                retryable=False,
            ) from exc
