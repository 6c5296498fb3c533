"""Where images go, behind one protocol (:class:`Output`), chosen once from ``--out``.

Today: a local folder (``LocalFolder``: streamed, verified, atomic, symlink-safe). The
engine and the ledger see only the protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.outputs._base import Output, StoredImage

if TYPE_CHECKING:
    import aiohttp


def open_output(out: str, *, session: aiohttp.ClientSession | None = None) -> Output:
    """The output at ``out`` (a folder; created when the first file is written)."""
    from pipeline.outputs._local import LocalFolder

    return LocalFolder(Path(out), session=session)


__all__ = ["Output", "StoredImage", "open_output"]
