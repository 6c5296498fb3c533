"""ledger.json and ``pipeline status``: the account of a batch, derived from its state.

``summarize`` is the one count of a batch's outcome (the run's result, ledger.json and
``status`` all read it); ``LedgerSink`` rewrites ledger.json while a run goes on;
``export_batch`` writes a batch's images as a dataset (loaded on first use: it brings
pyarrow, which a run does not need).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.ledger._document import (
    LEDGER_NAME,
    LedgerHeader,
    encode_document,
    ledger_document,
    summarize,
    summarize_tally,
)
from pipeline.ledger._sink import STAMP_KEY, LedgerSink
from pipeline.ledger._status import read_status

if TYPE_CHECKING:
    from pipeline.ledger._export import FORMATS, ExportResult, export_batch

_EXPORT = ("FORMATS", "ExportResult", "export_batch")

__all__ = [
    "FORMATS",
    "LEDGER_NAME",
    "STAMP_KEY",
    "ExportResult",
    "LedgerHeader",
    "LedgerSink",
    "encode_document",
    "export_batch",
    "ledger_document",
    "read_status",
    "summarize",
    "summarize_tally",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORT:
        from pipeline.ledger import _export

        return getattr(_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
