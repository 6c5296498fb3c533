"""Reading manifest files: bytes with a size cap, UTF-8 text, and YAML with line marks.

YAML is composed with PyYAML's safe loader (libyaml's ``CSafeLoader`` when present, else
``SafeLoader``) into a node tree which this module walks itself, so every mapping key and
sequence item keeps its line. The walk builds the same plain values ``yaml.safe_load``
would, with these deliberate differences:

- mapping keys are their text (``1: x`` gives the key ``"1"``); duplicate keys are errors;
- unquoted ``16:9`` (a YAML 1.1 base-60 integer) stays the string ``"16:9"``, and dates stay
  strings, because no manifest field means a number or a date there (and a bare ``=``
  is the string ``"="``);
- aliases (and ``<<`` merges) are allowed, but the document is refused once aliases have
  expanded to more than :data:`MAX_ALIAS_VALUES` values (a "billion laughs" bomb), or when
  it nests deeper than :data:`MAX_DEPTH`; files are capped at :data:`MAX_BYTES`;
- tags other than the core scalar, sequence and mapping tags (``!!binary``, ``!!set``,
  ``!!python/...``) are errors.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipeline.manifest._issues import IssueLog, Lines, Loc, field_path

MAX_BYTES = 20 * 1024 * 1024
MAX_ALIAS_VALUES = 100_000
MAX_DEPTH = 64

_T = "tag:yaml.org,2002:"
# libyaml composes ten times faster than pure Python; both give the same nodes and marks.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


class Refused(Exception):
    """A file cannot be read at all; the issue explaining why is already logged."""


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed YAML document: plain values and the line of every key and item."""

    value: object
    lines: Lines


def read_bytes(
    path: str, log: IssueLog, *, where: tuple[str, int | None, str] | None = None
) -> bytes:
    """Read a regular file of at most :data:`MAX_BYTES`.

    Problems are logged against ``where`` (path, line, field of the reference to the file)
    or else against the file itself; raises :class:`Refused` after logging.
    """
    at_path, at_line, at_field = where or (path, None, "")
    # Reported against the manifest, the message names the file; against itself, no need.
    named = f": {path}" if where else ""

    def refuse(message: str) -> Refused:
        log.add(at_path, at_line, at_field, message + named)
        return Refused()

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise refuse("not a regular file")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise refuse("file not found") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise refuse(f"cannot read the file ({reason})") from None
    if len(data) > MAX_BYTES:
        raise refuse(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
    if not data.strip():
        raise refuse("the file is empty")
    return data


def decode(data: bytes, path: str, log: IssueLog) -> str:
    """UTF-8 text (a leading BOM is dropped); every line with bad bytes is logged.

    Raises :class:`Refused` if any line is not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            log.add(path, number, "", f"not UTF-8 text (byte 0x{bad} at column {exc.start + 1})")
    raise Refused()


def parse_yaml(text: str, path: str, log: IssueLog) -> Document:
    """Compose and walk one YAML document. Raises :class:`Refused` after logging."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or "invalid YAML"
        if exc.context:
            # PyYAML's own order: "while scanning a quoted scalar ... found end of stream".
            started = exc.context_mark.line + 1 if exc.context_mark is not None else line
            where = f" on line {started}" if started != line else ""
            what = f"{exc.context}{where} {what}"
        log.add(path, line, "", f"YAML syntax error: {what}")
        raise Refused() from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        )
        log.add(path, line, "", f"YAML cannot contain the character U+{code:04X} ({exc.reason})")
        raise Refused() from None
    except yaml.YAMLError as exc:
        log.add(path, None, "", f"YAML error: {exc}")
        raise Refused() from None
    except RecursionError:
        log.add(path, None, "", f"nested more than {MAX_DEPTH} levels deep")
        raise Refused() from None
    if root is None:
        log.add(path, None, "", "the file has no content")
        raise Refused()
    walker = _Walker(path, log)
    value = walker.convert(root, (), 0)
    return Document(value, Lines(walker.lines, default=root.start_mark.line + 1))


class _Walker:
    """Turns composed nodes into plain values, recording the line of each location."""

    def __init__(self, path: str, log: IssueLog) -> None:
        self.path = path
        self.log = log
        self.lines: dict[Loc, int] = {}
        self.seen: set[int] = set()
        self.repeats = 0
        self._constructor = SafeConstructor()

    def _refuse(self, node: Node, message: str) -> Refused:
        self.log.add(self.path, node.start_mark.line + 1, "", message)
        return Refused()

    def convert(self, node: Node, loc: Loc, depth: int) -> object:
        # Only values reached again through an alias count towards the bomb limit, so a
        # large plain document (up to MAX_BYTES) is never refused for its size alone.
        if id(node) in self.seen:
            self.repeats += 1
            if self.repeats > MAX_ALIAS_VALUES:
                raise self._refuse(
                    node, f"aliases expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?)"
                )
        else:
            self.seen.add(id(node))
        if depth > MAX_DEPTH:
            raise self._refuse(node, f"nested more than {MAX_DEPTH} levels deep")
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc)
        if isinstance(node, SequenceNode):
            if node.tag != _T + "seq":
                self._bad_tag(node, loc)
            return [self.convert(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _T + "map":
                self._bad_tag(node, loc)
            return self._mapping(node, loc, depth)
        raise self._refuse(node, "unsupported YAML node")  # pragma: no cover - no other kinds

    def _bad_tag(self, node: Node, loc: Loc) -> None:
        tag = node.tag.replace(_T, "!!", 1)
        self.log.add(self.path, node.start_mark.line + 1, field_path(loc), f"unsupported tag {tag}")

    def _scalar(self, node: ScalarNode, loc: Loc) -> object:
        tag, text = node.tag, node.value
        if tag == _T + "str":
            return text
        if tag == _T + "null":
            return None
        if tag in (_T + "timestamp", _T + "value"):
            return text
        if tag in (_T + "int", _T + "float") and ":" in text:
            return text
        if tag in (_T + "bool", _T + "int", _T + "float"):
            try:
                return self._constructor.construct_object(node)
            except (ValueError, yaml.YAMLError):
                return text
        self._bad_tag(node, loc)
        return None

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, object]:
        if depth > MAX_DEPTH:  # merges recurse here without going through convert()
            raise self._refuse(node, f"nested more than {MAX_DEPTH} levels deep")
        explicit: dict[str, object] = {}
        merged: dict[str, object] = {}
        key_lines: dict[Loc, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _T + "merge":
                for key, value in self._merge(value_node, loc, depth).items():
                    merged.setdefault(key, value)
                continue
            if not isinstance(key_node, ScalarNode):
                self.log.add(
                    self.path,
                    key_node.start_mark.line + 1,
                    field_path(loc),
                    "mapping keys must be plain strings",
                )
                continue
            key = key_node.value
            if key in explicit:
                self.log.add(
                    self.path,
                    key_node.start_mark.line + 1,
                    field_path((*loc, key)),
                    "duplicate key",
                )
                continue
            explicit[key] = self.convert(value_node, (*loc, key), depth + 1)
            key_lines[(*loc, key)] = key_node.start_mark.line + 1
        # YAML merge keys: explicit keys win over merged ones, whatever their order.
        self.lines.update(key_lines)
        return {**merged, **explicit}

    def _merge(self, node: Node, loc: Loc, depth: int) -> dict[str, object]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        result: dict[str, object] = {}
        for source in sources:
            if not isinstance(source, MappingNode):
                self.log.add(
                    self.path,
                    source.start_mark.line + 1,
                    field_path(loc),
                    "'<<' needs a mapping (or a list of mappings) to merge",
                )
                continue
            # Earlier mappings in a merge list win over later ones.
            for key, value in self._mapping(source, loc, depth + 1).items():
                result.setdefault(key, value)
        return result
