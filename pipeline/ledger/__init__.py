"""ledger.json and ``pipeline status``: the account of a batch, derived from its state.

``summarize`` is the one count of a batch's outcome (the run's result, ledger.json and
``status`` all read it); ``LedgerSink`` rewrites ledger.json while a run goes on.
"""

from __future__ import annotations

from pipeline.ledger._document import (
    LEDGER_NAME,
    LedgerHeader,
    encode_document,
    ledger_document,
    summarize,
)
from pipeline.ledger._sink import STAMP_KEY, LedgerSink
from pipeline.ledger._status import read_status

__all__ = [
    "LEDGER_NAME",
    "STAMP_KEY",
    "LedgerHeader",
    "LedgerSink",
    "encode_document",
    "ledger_document",
    "read_status",
    "summarize",
]
