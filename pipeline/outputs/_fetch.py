"""Streaming an image over HTTP with every check that needs no decoding.

The body is read in chunks, hashed on the way and handed to a :class:`BodySink` (which
holds it in memory up to its spill size, then writes it out), so an image is never held
whole. Checks: http(s) only, the size cap (declared and actual), Content-Length, magic
bytes (png, jpeg, webp) and the format's end marker (truncation without a
Content-Length). Width and height are read by the sink when it finishes (a header parse).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from pipeline.errors import DownloadError
from pipeline.outputs._imagecheck import looks_complete, sniff_format

CHUNK = 256 * 1024
_TAIL = 32


class BodySink(Protocol):
    """Where a body goes while it streams."""

    @property
    def spill_bytes(self) -> int:
        """Held bytes past which ``spill`` is awaited."""
        ...

    def hold(self, chunk: bytes) -> int:
        """Keep ``chunk``; returns the bytes now held."""
        ...

    async def spill(self) -> None:
        """Write the held bytes out."""
        ...


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a streamed body turned out to be."""

    sha256: str
    size: int
    format: str


def check_url(url: str) -> None:
    """Refuse an image URL that is not http(s) (a ``file:`` URL, say)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError("image URL is not http(s)", url=url, retryable=False)


class Fetcher:
    """GETs image bodies into sinks. Safe to share between tasks."""

    __slots__ = ("_max_bytes", "_session", "_timeout")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_bytes: int,
        timeout_s: float = 120.0,
    ) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=15, sock_read=30)

    async def stream(self, url: str, sink: BodySink) -> Fetched:
        """Stream ``url`` into ``sink`` and check it. Raises ``DownloadError``:
        ``retryable`` for network faults, HTTP 408/429/5xx and truncation; final for a
        non-image, an oversized image or any other HTTP status."""
        check_url(url)
        sha = hashlib.sha256()
        size = 0
        fmt: str | None = None
        head = b""
        tail = b""
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise DownloadError(
                        f"HTTP {resp.status} for image",
                        url=url,
                        retryable=resp.status in (408, 429) or resp.status >= 500,
                        stale=resp.status in (403, 404, 410),
                    )
                declared = resp.content_length
                if declared is not None and declared > self._max_bytes:
                    raise DownloadError(
                        f"image is {declared} bytes, over the {self._max_bytes} cap",
                        url=url,
                        retryable=False,
                    )
                async for chunk in resp.content.iter_chunked(CHUNK):
                    if len(head) < 16:
                        head += chunk[: 16 - len(head)]
                    if fmt is None and len(head) >= 12:
                        fmt = sniff_format(head)
                        if fmt is None:
                            raise DownloadError(
                                "response is not a png, jpeg or webp image",
                                url=url,
                                retryable=False,
                            )
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise DownloadError(
                            f"image exceeds the {self._max_bytes} byte cap",
                            url=url,
                            retryable=False,
                        )
                    sha.update(chunk)
                    tail = (tail + chunk[-_TAIL:])[-_TAIL:]  # not a copy of the chunk
                    if sink.hold(chunk) >= sink.spill_bytes:
                        await sink.spill()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadError(f"download failed: {type(exc).__name__}", url=url) from exc
        if declared is not None and size != declared:
            raise DownloadError(f"truncated: got {size} of {declared} bytes", url=url)
        if fmt is None:
            if head and sniff_format(head) is None:
                raise DownloadError(
                    "response is not a png, jpeg or webp image", url=url, retryable=False
                )
            raise DownloadError("empty or truncated response", url=url)
        if not looks_complete(fmt, tail, size, head):
            raise DownloadError(f"truncated: the {fmt} data ends early", url=url)
        return Fetched(sha.hexdigest(), size, fmt)
