"""``load_manifest``: a manifest (a file, or a mapping) in, a validated, expanded Batch out.

Every problem found is collected (up to a cap) and raised as one :class:`ManifestError`;
nothing else escapes, whatever the input holds. The stages run as far as they can: a
broken ``name`` does not stop the prompts from being checked, and one broken prompt does
not stop the others. A mapping (from Python) has the YAML manifest's schema; its problems
name ``<mapping>`` and the field, and carry no line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TypeVar, cast

from pydantic import BaseModel, ValidationError

from pipeline import _gc
from pipeline.errors import ManifestError
from pipeline.jobs import Batch, Budget, Job, ProviderSettings
from pipeline.manifest._csvfile import manifest_name, parse_csv
from pipeline.manifest._entries import Entry, ParsedPrompt, list_entries, parse_entries
from pipeline.manifest._expand import SweepAxes, expand
from pipeline.manifest._fields import PROVIDERS, SWEEP_AXES
from pipeline.manifest._issues import IssueLog, Lines, Loc, TooManyIssues, pydantic_issues
from pipeline.manifest._models import Budget as BudgetModel
from pipeline.manifest._models import Manifest, ProviderOptions, Settings, Sweep
from pipeline.manifest._source import Refused, decode, parse_yaml, read_bytes
from pipeline.manifest._validate import check_template, check_unique_ids
from pipeline.providers.specs import SPECS

YAML_SUFFIXES = (".yaml", ".yml")
CSV_SUFFIXES = (".csv",)
MAPPING_NAME = "<mapping>"

_M = TypeVar("_M", bound=BaseModel)
_Read = tuple[Manifest, list[ParsedPrompt], SweepAxes, bool]
_KEYS: dict[Loc, tuple[str, ...]] = {
    (): tuple(Manifest.model_fields),
    ("defaults",): tuple(Settings.model_fields),
    ("budget",): tuple(BudgetModel.model_fields),
    ("sweep",): tuple(Sweep.model_fields),
    **{("providers", name): tuple(ProviderOptions.model_fields) for name in PROVIDERS},
}


def load_manifest(
    manifest: str | os.PathLike[str] | Mapping[str, object],
    *,
    out: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Batch:
    """Load, validate and expand a manifest: a YAML or CSV file, or a mapping with the
    YAML manifest's schema.

    ``out`` (the ``--out`` option) wins over the manifest's ``output_dir``, which wins
    over ``out/<name>``. ``base_dir``: where a mapping's ``prompts_file`` is found
    (default: the current folder; a file's is beside the file). Raises
    :class:`ManifestError` listing every problem found (file missing or unreadable
    included), and never any other exception.
    """
    log = IssueLog()
    out_dir = os.fspath(out) if out is not None else None
    shown = MAPPING_NAME
    try:
        with _gc.paused():
            if isinstance(manifest, Mapping):
                base = os.fspath(base_dir) if base_dir is not None else "."
                return _build(shown, out_dir, log, _from_mapping(manifest, base, log))
            try:
                shown = os.fspath(manifest)
            except TypeError:
                return _fail(log, str(manifest), "not a file path or a mapping")
            return _load(shown, out_dir, log)
    except (Refused, TooManyIssues):
        raise log.error() from None
    except ManifestError:
        raise
    except RecursionError:
        return _fail(log, shown, "the manifest is nested too deeply")
    except Exception as exc:  # the promise is "ManifestError or a Batch", whatever the input
        return _fail(log, shown, f"internal error while loading: {type(exc).__name__}: {exc}")


def _fail(log: IssueLog, shown: str, message: str) -> Batch:
    with contextlib.suppress(TooManyIssues):
        log.add(shown, None, "", message)
    raise log.error()


def _load(shown: str, out: str | None, log: IssueLog) -> Batch:
    suffix = os.path.splitext(shown)[1].lower()
    if suffix not in YAML_SUFFIXES + CSV_SUFFIXES:
        log.add(shown, None, "", f"unsupported file type {suffix or '(none)'!r}: use .yaml or .csv")
        raise Refused()
    text = decode(read_bytes(shown, log), shown, log)
    reader = _from_csv if suffix in CSV_SUFFIXES else _from_yaml
    read = reader(text, shown, log)
    del text  # a CSV manifest's text need not live beside its jobs
    return _build(shown, out, log, read)


def _build(shown: str, out: str | None, log: IssueLog, read: _Read) -> Batch:
    manifest, parsed, sweep, expandable = read
    check_unique_ids(parsed, log)
    if expandable:
        jobs = expand(parsed, sweep, log)  # frees each prompt once it is expanded
    else:
        # Without valid defaults or sweep the jobs are unknown; templates can still be checked.
        jobs = []
        for p in parsed:
            check_template(p, log)
    log.raise_if_any()
    return Batch(
        name=manifest.name,
        manifest_path=shown,
        output_dir=out or manifest.output_dir or os.path.join("out", manifest.name),
        jobs=tuple(jobs),
        providers=_provider_settings(manifest, jobs),
        budget=Budget(
            max_usd=manifest.budget.max_usd if manifest.budget else None,
            max_credits=manifest.budget.max_credits if manifest.budget else None,
        ),
    )


def _from_csv(text: str, shown: str, log: IssueLog) -> _Read:
    """A CSV manifest: rows only; the name is the file's stem, everything else default."""
    entries = parse_csv(text, shown, log)
    if not entries:
        log.add(shown, None, "", "no prompts: the file has a header but no rows")
    manifest = Manifest(name=manifest_name(shown))
    return manifest, parse_entries(entries, log), SweepAxes((), Settings(), shown, Lines()), True


def _from_yaml(text: str, shown: str, log: IssueLog) -> _Read:
    """A YAML manifest, its prompts and those of its ``prompts_file``."""
    doc = parse_yaml(text, shown, log)
    return _from_document(doc.value, shown, os.path.dirname(shown), doc.lines, log)


def _from_mapping(value: Mapping[str, object], base_dir: str, log: IssueLog) -> _Read:
    """A manifest given as a mapping (no lines to report)."""
    return _from_document(dict(value), MAPPING_NAME, base_dir, Lines(), log)


def _from_document(value: object, shown: str, base_dir: str, lines: Lines, log: IssueLog) -> _Read:
    """A manifest document, its prompts and those of its ``prompts_file`` (found relative
    to ``base_dir``)."""
    manifest, entries, expandable = _yaml_manifest(value, shown, lines, log)
    _check_provider_options(manifest, shown, lines, log)
    parsed = parse_entries(entries, log)
    more: list[Entry] | None = []
    if manifest.prompts_file is not None:
        more = _prompts_file(manifest.prompts_file, shown, base_dir, lines, log)
        parsed += parse_entries(more or [], log, first=len(entries) + 1)
    raw = cast("dict[str, object]", value)
    # Only when nothing was given: a broken prompts or prompts_file is reported already.
    if manifest.prompts_file is not None:
        file_empty = more == []
    else:
        file_empty = raw.get("prompts_file") is None
    if not entries and raw.get("prompts") in (None, []) and file_empty:
        where = lines.at(("prompts",))
        log.add(shown, where, "prompts", "no prompts: add some under prompts or prompts_file")
    return manifest, parsed, _sweep(manifest, raw, shown, lines), expandable


def _yaml_manifest(
    value: object, shown: str, lines: Lines, log: IssueLog
) -> tuple[Manifest, list[Entry], bool]:
    """The manifest model (best effort when invalid), its prompt entries, and whether the
    settings that jobs depend on (defaults, sweep) are valid enough to expand them."""
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else "a single value"
        log.add(shown, lines.at(), "", f"a manifest is a mapping (name, prompts, ...), not {kind}")
        raise Refused()
    top = dict(value)
    prompts = top.get("prompts")
    entries: list[Entry] = []
    if isinstance(prompts, list):
        # Prompts are validated one by one (see entries.py) so each gets its own report.
        entries = list_entries(prompts, shown, lines, ("prompts",))
        top["prompts"] = []
    try:
        return Manifest.model_validate(top), entries, True
    except ValidationError as exc:
        failed = {err["loc"][0] for err in exc.errors() if err["loc"]}
        for issue in pydantic_issues(exc, path=shown, lines=lines, keys_at=_KEYS):
            log.add(issue.path, issue.line, issue.field, issue.message)
    salvaged = Manifest(
        name="invalid",
        defaults=_part(Settings, top.get("defaults")),
        sweep=_part(Sweep, top.get("sweep")),
    )
    return salvaged, entries, not failed & {"defaults", "sweep"}


def _check_provider_options(manifest: Manifest, shown: str, lines: Lines, log: IssueLog) -> None:
    """Options a provider does not offer: ``tier`` without tiers, ``stream`` without a
    stream."""
    for name, given in (manifest.providers or {}).items():
        spec = SPECS.get(name)
        if spec is None:
            continue
        if given.tier is not None and not spec.tiers:
            loc = ("providers", name, "tier")
            log.add(shown, lines.at(loc), f"providers.{name}.tier", f"{name} has no tiers")
        if given.stream and not spec.streams:
            loc = ("providers", name, "stream")
            log.add(shown, lines.at(loc), f"providers.{name}.stream", f"{name} has no stream")


def _part(model: type[_M], value: object) -> _M | None:
    try:
        return model.model_validate(value) if value is not None else None
    except ValidationError:
        return None


def _prompts_file(
    name: str, shown: str, base_dir: str, lines: Lines, log: IssueLog
) -> list[Entry] | None:
    """Entries of the CSV (or YAML list) named by ``prompts_file``, relative to
    ``base_dir``; ``None`` when the file could not be read (the reason is logged)."""
    path = os.path.normpath(os.path.join(base_dir, name))
    where = (shown, lines.at(("prompts_file",)), "prompts_file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in YAML_SUFFIXES + CSV_SUFFIXES:
        log.add(*where, f"unsupported file type {suffix or '(none)'!r}: use .csv or .yaml")
        return None
    try:
        text = decode(read_bytes(path, log, where=where), path, log)
        if suffix in CSV_SUFFIXES:
            return parse_csv(text, path, log)
        doc = parse_yaml(text, path, log)
    except Refused:
        return None
    if not isinstance(doc.value, list):
        log.add(path, doc.lines.at(), "", "a YAML prompts_file must be a list of prompts")
        return None
    return list_entries(doc.value, path, doc.lines, ())


def _sweep(manifest: Manifest, raw: object, shown: str, lines: Lines) -> SweepAxes:
    axes: list[tuple[str, tuple[object, ...]]] = []
    if manifest.sweep is not None and isinstance(raw, Mapping):
        written = raw.get("sweep")
        # The cartesian product follows the order the axes were written in.
        for key in written if isinstance(written, Mapping) else ():
            values = getattr(manifest.sweep, key, None) if key in SWEEP_AXES else None
            if values is not None:
                axes.append((key, tuple(values)))
    return SweepAxes(tuple(axes), manifest.defaults or Settings(), shown, lines)


def _provider_settings(manifest: Manifest, jobs: list[Job]) -> dict[str, ProviderSettings]:
    """Settings for every provider the jobs use, spec defaults filled in."""
    settings: dict[str, ProviderSettings] = {}
    for name in dict.fromkeys(job.provider for job in jobs):
        spec = SPECS[name]
        given = (manifest.providers or {}).get(name) or ProviderOptions()
        tier = (spec.tiers or {}).get(given.tier or "")
        settings[name] = ProviderSettings(
            requests_per_second=given.requests_per_second or spec.default_requests_per_second,
            max_concurrent=given.max_concurrent
            or (tier[1] if tier else spec.default_max_concurrent),
            job_timeout_s=given.job_timeout_s or spec.default_job_timeout_s,
            usd_per_credit=given.usd_per_credit,
            base_url=given.base_url or spec.default_base_url,
            images_per_minute=given.images_per_minute or (tier[0] if tier else None),
            tier=given.tier,
            stream=bool(given.stream),
        )
    return settings
