"""Prompt entries: a prompt as written (YAML item or CSV row) and as validated.

An :class:`Entry` is one raw prompt with where it came from; :func:`parse_entries` checks
each against the :class:`~pipeline.manifest._models.Prompt` model on its own (so one bad
prompt does not hide the problems of the others) and gives it its id.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from pipeline.manifest._issues import IssueLog, Lines, Loc, field_path, pydantic_issues
from pipeline.manifest._models import Prompt, PromptEntry

_PROMPT = TypeAdapter[Prompt](PromptEntry)
_PROMPT_KEYS: dict[Loc, tuple[str, ...]] = {(): tuple(Prompt.model_fields)}


@dataclass(frozen=True, slots=True)
class Entry:
    """One prompt as written: a string or a mapping, before validation.

    ``label`` is its location in its file (``("prompts", 3)``; ``()`` for a CSV row) and
    ``lines`` a view of line numbers rooted at it.
    """

    value: object
    path: str
    label: Loc
    lines: Lines


@dataclass(frozen=True, slots=True)
class ParsedPrompt:
    """A prompt that passed the model checks, with its id and where it was written."""

    prompt: Prompt
    prompt_id: str
    path: str
    label: Loc
    lines: Lines

    def field(self, *loc: str | int) -> str:
        """Field path of ``loc`` inside this prompt, e.g. ``prompts[3].resolution``."""
        return field_path(self.label + loc)

    def line(self, *loc: str | int) -> int | None:
        """Line of ``loc`` inside this prompt (the prompt's own line when not written)."""
        return self.lines.at(loc)

    def is_set(self, key: str) -> bool:
        """Whether the prompt itself gives setting ``key`` (``null`` counts as not set)."""
        return getattr(self.prompt, key) is not None


def list_entries(value: list[object], path: str, lines: Lines, label: Loc) -> list[Entry]:
    """Entries for the items of a YAML list of prompts found at ``label``."""
    return [Entry(item, path, (*label, i), lines.child(*label, i)) for i, item in enumerate(value)]


def parse_entries(entries: list[Entry], log: IssueLog, *, first: int = 1) -> list[ParsedPrompt]:
    """Validate each entry; invalid ones are logged and left out.

    Entries without an ``id`` get ``p<position>``, counting from ``first`` over all entries
    (valid or not) so ids do not shift when a broken prompt is fixed.
    """
    parsed: list[ParsedPrompt] = []
    for position, entry in enumerate(entries, start=first):
        try:
            prompt = _PROMPT.validate_python(entry.value)
        except ValidationError as exc:
            for issue in pydantic_issues(
                exc, path=entry.path, lines=entry.lines, prefix=entry.label, keys_at=_PROMPT_KEYS
            ):
                log.add(issue.path, issue.line, issue.field, issue.message)
            continue
        parsed.append(
            ParsedPrompt(
                prompt=prompt,
                prompt_id=prompt.id if prompt.id is not None else f"p{position}",
                path=entry.path,
                label=entry.label,
                lines=entry.lines,
            )
        )
    return parsed
