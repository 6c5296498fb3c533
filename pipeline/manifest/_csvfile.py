"""CSV prompt files: a header row, then one prompt per row.

Columns (any order, only ``prompt`` required): ``id, prompt, provider, aspect_ratio,
resolution, n, output_format, image_urls`` (URLs separated by ``|``). Header names are
case-insensitive; cells are trimmed and an empty cell means "not set". Blank rows are
skipped. Each row's line is the line its record starts on.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import PurePath

from pipeline.manifest._entries import Entry
from pipeline.manifest._fields import suggest
from pipeline.manifest._issues import IssueLog, Lines
from pipeline.manifest._source import Refused

COLUMNS: tuple[str, ...] = (
    "id",
    "prompt",
    "provider",
    "aspect_ratio",
    "resolution",
    "n",
    "output_format",
    "image_urls",
)


def manifest_name(path: str) -> str:
    """A CSV manifest's batch name: its file stem made safe (``a b.csv`` -> ``a-b``)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePath(path).stem).strip("-")[:100]
    return name or "manifest"


def _header(row: list[str], path: str, line: int, log: IssueLog) -> list[str] | None:
    names = [cell.strip().lower() for cell in row]
    if not any(name in COLUMNS for name in names):
        log.add(
            path,
            line,
            "",
            "a header row is required: the first row must name the columns "
            f"({', '.join(COLUMNS)}); found {row[0].strip()[:40]!r}",
        )
        return None
    ok = True
    for name in names:
        if name not in COLUMNS:
            log.add(path, line, name, "unknown column" + suggest(name, COLUMNS))
            ok = False
        elif names.count(name) > 1:
            log.add(path, line, name, "column appears more than once")
            ok = False
    if "prompt" not in names:
        log.add(path, line, "prompt", "the header has no 'prompt' column")
        ok = False
    return names if ok else None


def _cells(header: list[str], row: list[str]) -> dict[str, object]:
    data: dict[str, object] = {}
    for name, cell in zip(header, row, strict=True):
        value = cell.strip()
        if not value:
            continue
        if name == "image_urls":
            data[name] = [u.strip() for u in value.split("|") if u.strip()]
        else:
            data[name] = value
    return data


def parse_csv(text: str, path: str, log: IssueLog) -> list[Entry]:
    """One :class:`Entry` per non-blank row after the header.

    Logs every bad row; raises :class:`Refused` when the file cannot be read as CSV at all
    (bad quoting, no usable header).
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    entries: list[Entry] = []
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _header(row, path, start, log)
                if header is None:
                    raise Refused()
                continue
            if len(row) != len(header):
                log.add(path, start, "", f"row has {len(row)} cells; the header has {len(header)}")
                continue
            entries.append(Entry(_cells(header, row), path, (), Lines(default=start)))
    except csv.Error as exc:
        log.add(path, reader.line_num or end + 1, "", f"CSV error: {exc}")
        raise Refused() from None
    if header is None:
        log.add(path, None, "", f"{path} has no header row")
        raise Refused()
    return entries
