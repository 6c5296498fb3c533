"""Where images go, behind one protocol (:class:`Output`), chosen once from ``--out``.

A local folder (``LocalFolder``: streamed, verified, atomic, symlink-safe) or an object
store (``ObjectStoreOutput`` for ``s3://``, ``gs://``, ``az://`` URLs: verified before
anything is stored, never a partial object). The engine and the ledger see only the
protocol; a write the store refuses raises :class:`OutputRefused`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline._home import is_object_url
from pipeline.outputs._base import Output, Sizes, StoredImage

if TYPE_CHECKING:
    import aiohttp

    from pipeline.outputs._object_errors import OutputRefused


def open_output(out: str, *, session: aiohttp.ClientSession | None = None) -> Output:
    """The output at ``out``: an object store for an ``s3://`` (``gs://``, ``az://``) URL,
    else a folder (created when the first file is written). Raises ``UsageError`` for an
    object-store URL that cannot be used (credentials in it, an unknown store)."""
    if is_object_url(out):
        from pipeline.outputs._object import ObjectStoreOutput

        return ObjectStoreOutput(out, session=session)
    from pipeline.outputs._local import LocalFolder

    return LocalFolder(Path(out), session=session)


def __getattr__(name: str) -> Any:
    if name == "OutputRefused":  # obstore loads only for an object-store output
        from pipeline.outputs._object_errors import OutputRefused

        return OutputRefused
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Output", "OutputRefused", "Sizes", "StoredImage", "open_output"]
