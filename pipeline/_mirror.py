"""A local copy of an object-store batch, for the contact sheet.

``pipeline report s3://bucket/prefix`` draws the sheet in the batch's local home
(``pipeline._home``): the ledger is read from the store (or the run state), and every
image it lists is copied to ``HOME/images/`` once (a copy whose sha256 matches the
ledger's is kept), so ``HOME/report.html`` opens offline with its full-size images next
to it. Ledger paths are untrusted: only ``images/<name>`` with a plain name is copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.outputs import Output

LEDGER_NAME = "ledger.json"


def read_ledger(output: Output) -> bytes:
    """The batch's ledger.json from ``output``. Raises ``UsageError`` when it has none."""
    try:
        return output.read_bytes(LEDGER_NAME)
    except FileNotFoundError:
        raise UsageError(f"{output.location}: no batch here ({LEDGER_NAME} not found)") from None
    except OSError as exc:
        raise UsageError(f"{output.location}: cannot read {LEDGER_NAME}: {exc}") from exc


def mirror_images(output: Output, home: Path, ledger: bytes) -> int:
    """Copy the images ``ledger`` lists from ``output`` to ``home/images``; how many were
    copied (the others were there already). An image missing in the store is left out
    (the sheet says so on its cell)."""
    try:
        doc: dict[str, Any] = json.loads(ledger)
    except ValueError as exc:
        raise UsageError(f"{output.location}/{LEDGER_NAME}: not a readable ledger") from exc
    folder = home / "images"
    folder.mkdir(parents=True, exist_ok=True)
    copied = 0
    for job in doc.get("jobs") or ():
        for image in job.get("images") or ():
            rel = str(image.get("path", ""))
            head, _, name = rel.partition("/")
            if head != "images" or not name or "/" in name or name.startswith("."):
                continue
            target = folder / name
            if _matches(target, image.get("sha256")):
                continue
            try:
                data = output.read_bytes(rel)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UsageError(f"{output.location}/{rel}: cannot read it: {exc}") from exc
            _write_atomic(target, data)
            copied += 1
    return copied


def _matches(path: Path, sha256: object) -> bool:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha256
    except OSError:
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # replaces a planted link, never follows it
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
