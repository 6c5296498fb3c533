"""Collecting manifest problems with their file, line and field path.

A field path is written like ``prompts[3].resolution`` (0-based list indexes). :class:`Lines`
maps a path to the line it was written on, falling back to the nearest enclosing item (a
missing key is reported on the line of the mapping that lacks it). :func:`pydantic_issues`
turns a pydantic ``ValidationError`` into issues with user-facing wording.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pipeline.errors import ManifestError, ManifestIssue
from pipeline.manifest._fields import suggest

Loc = tuple[str | int, ...]
MAX_ISSUES = 50


def field_path(loc: Iterable[str | int]) -> str:
    """``("prompts", 3, "resolution")`` -> ``prompts[3].resolution``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class Lines:
    """Line numbers of the values in one document, looked up by field location."""

    __slots__ = ("_default", "_prefix", "_table")

    def __init__(
        self, table: Mapping[Loc, int] | None = None, prefix: Loc = (), default: int | None = None
    ) -> None:
        self._table: Mapping[Loc, int] = table or {}
        self._prefix = prefix
        self._default = default

    def at(self, loc: Loc = ()) -> int | None:
        """The line of ``loc`` (relative to this view), or of its nearest ancestor."""
        full = self._prefix + loc
        while True:
            line = self._table.get(full)
            if line is not None:
                return line
            if not full:
                return self._default
            full = full[:-1]

    def child(self, *loc: str | int) -> Lines:
        """A view whose locations are relative to ``loc``."""
        return Lines(self._table, self._prefix + loc, self._default)

    def __repr__(self) -> str:
        return f"Lines(prefix={self._prefix!r}, default={self._default!r})"


class TooManyIssues(Exception):
    """Raised internally when the issue cap is reached: stop looking, report what we have."""


class IssueLog:
    """Collects issues (deduplicated, in the order found) up to :data:`MAX_ISSUES`."""

    __slots__ = ("_issues", "_seen", "limit")

    def __init__(self, limit: int = MAX_ISSUES) -> None:
        self.limit = limit
        self._issues: list[ManifestIssue] = []
        self._seen: set[ManifestIssue] = set()

    def __len__(self) -> int:
        return len(self._issues)

    def add(self, path: str, line: int | None, field: str, message: str) -> None:
        """Record one issue; raises :class:`TooManyIssues` once the cap is reached."""
        issue = ManifestIssue(path, line, field, message)
        if issue in self._seen:
            return
        self._seen.add(issue)
        if len(self._issues) >= self.limit - 1:
            self._issues.append(
                ManifestIssue(path, None, "", f"too many problems; stopped after {self.limit - 1}")
            )
            raise TooManyIssues
        self._issues.append(issue)

    def error(self) -> ManifestError:
        """The error to raise for the issues collected so far, by file and line."""
        files = {issue.path: i for i, issue in reversed(list(enumerate(self._issues)))}
        ordered = sorted(
            self._issues,
            key=lambda i: (i.message.startswith("too many"), files[i.path], i.line or 0),
        )
        return ManifestError(ordered)

    def raise_if_any(self) -> None:
        """Raises :class:`ManifestError` when any issue was recorded."""
        if self._issues:
            raise self.error()


def describe(value: Any) -> str:
    """A short, YAML-flavoured description of a value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "bool_type": "true or false",
}


def _message(err: ErrorDetails, known_keys: Sequence[str]) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1]) if err["loc"] else ""
        return "unknown key" + suggest(key, known_keys)
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(value)}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty" if ctx.get("min_length") == 1 else err["msg"]
    if kind == "too_long":
        return f"has {ctx.get('actual_length')} items; at most {ctx.get('max_length')} allowed"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt', 0):g}, got {describe(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {describe(value)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {describe(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {describe(value)}"
    return str(err["msg"])


def pydantic_issues(
    exc: ValidationError,
    *,
    path: str,
    lines: Lines,
    prefix: Loc = (),
    keys_at: Mapping[Loc, Sequence[str]] | None = None,
) -> list[ManifestIssue]:
    """Translate a pydantic error: every error becomes one issue with line and field path.

    ``prefix`` is prepended to each error's location for the field path (e.g. a prompt
    validated on its own). ``keys_at`` lists the valid keys per mapping location (without
    the prefix, list indexes as 0) for "did you mean" hints on unknown keys.
    """
    issues: list[ManifestIssue] = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
        parent = tuple(0 if isinstance(p, int) else p for p in loc[:-1])
        known = (keys_at or {}).get(parent, ())
        issues.append(
            ManifestIssue(path, lines.at(loc), field_path(prefix + loc), _message(err, known))
        )
    return issues
