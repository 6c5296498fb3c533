"""The outputs protocol: where a batch's images and ledger.json go.

An :class:`Output` downloads an image, verifies it and stores it under its final name in
one step, so a stored image is always complete and valid; it also keeps ledger.json
(written atomically), checks on resume which images are still there, and moves the files
of a job that an edit renamed. The engine sees only this protocol (the local folder today;
object stores implement it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

Sizes = Sequence[tuple[str, int]]  # a job's images: (path, bytes) each


@dataclass(frozen=True, slots=True)
class StoredImage:
    """A verified, stored image. ``path`` is relative to the output (``images/...``)."""

    path: str
    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    source_url: str

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "source_url": self.source_url,
        }


class Output(Protocol):
    """A batch's output location. Safe to share between tasks."""

    @property
    def location(self) -> str:
        """The folder or URL, for messages."""
        ...

    async def fetch(self, url: str, stem: str) -> StoredImage:
        """Download ``url``, verify it and store it as ``images/<stem>.<ext>`` (the
        extension follows the bytes). Raises ``DownloadError`` (``retryable`` for network
        faults and truncation)."""
        ...

    async def discard(self, image: StoredImage) -> None:
        """Remove a stored image again (its job failed after all). Never raises."""
        ...

    async def sweep(self) -> None:
        """Remove what a killed run left half-written. Never raises."""
        ...

    async def missing(self, jobs: Sequence[tuple[str, Sizes]]) -> set[str]:
        """Of ``jobs`` (job id, each of its images' recorded path and size in bytes), the
        ids whose images are not all present with their recorded size (a job without
        images counts as missing them)."""
        ...

    async def move(self, path: str, new_path: str) -> bool:
        """Rename a stored image; False (nothing done) when ``path`` is not there or
        ``new_path`` is taken."""
        ...

    def write_atomic(self, name: str, pieces: Iterable[str]) -> None:
        """Write the text ``pieces`` as ``name`` so that readers see the old or the new
        content, never a mix. Blocking: call it from a worker thread."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """The content of the stored file ``path`` (relative to the output: an image, or
        ledger.json). Blocking. Raises ``OSError`` (``FileNotFoundError`` when absent)."""
        ...

    def identity(self, name: str) -> str | None:
        """What identifies the current content of ``name`` (None: it is not there).
        Blocking."""
        ...

    async def aclose(self) -> None: ...
