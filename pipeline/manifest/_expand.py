"""Expanding validated prompts into jobs.

Settings resolve as: built-in defaults < ``defaults`` < the prompt's own fields < ``sweep``
axes, except that an axis the prompt sets itself is not swept for that prompt. A prompt
yields one job per combination of its swept axes (in the order written) and its vars (in
the order written), the first axis varying slowest. Each job's id is its base id
(``<prompt id>--<slug of each variant value>``) until ``pipeline.manifest._ids`` makes it
final.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from pipeline.jobs import Job, JobParams
from pipeline.manifest._entries import ParsedPrompt
from pipeline.manifest._fields import BUILTIN_DEFAULTS
from pipeline.manifest._ids import assign_ids
from pipeline.manifest._issues import IssueLog, Lines
from pipeline.manifest._models import Settings
from pipeline.manifest._newjob import new_job
from pipeline.manifest._validate import check_template, params_errors, prompt_errors
from pipeline.providers.specs import SPECS

MAX_JOBS = 1_000_000
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class SweepAxes:
    """The manifest's ``sweep`` (axes in the order written) and ``defaults``, with lines."""

    axes: tuple[tuple[str, tuple[object, ...]], ...]
    defaults: Settings
    path: str
    lines: Lines


@functools.lru_cache(maxsize=4096)
def slug(value: str) -> str:
    """``"16:9"`` -> ``"16x9"``, ``"Oil painting"`` -> ``"oil-painting"``, ``"é"`` -> ``"e"``."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_text.lower().replace(":", "x")).strip("-")


def _slugs(values: Iterable[str]) -> tuple[str, ...]:
    """The non-empty slugs of ``values``: what a job id lists of its variant."""
    return tuple(s for s in map(slug, values) if s)


_Shared = dict[tuple[str, str], list[ParsedPrompt]]


_SETTINGS: tuple[tuple[str, object], ...] = (*BUILTIN_DEFAULTS.items(), ("image_urls", ()))


def _settings(p: ParsedPrompt, sweep: SweepAxes) -> tuple[dict[str, object], set[str]]:
    """Each setting's value before sweeping (``image_urls`` as a tuple), and which ones
    came from ``defaults``."""
    values: dict[str, object] = {}
    from_defaults: set[str] = set()
    prompt, defaults = p.prompt, sweep.defaults
    for key, builtin in _SETTINGS:
        value = getattr(prompt, key)
        if value is None:
            value = getattr(defaults, key)
            if value is None:
                value = builtin
            else:
                from_defaults.add(key)
        values[key] = tuple(value) if isinstance(value, list) else value
    return values, from_defaults


def _params(settings: dict[str, object]) -> JobParams:
    return JobParams(
        aspect_ratio=cast(str, settings["aspect_ratio"]),
        resolution=cast(str, settings["resolution"]),
        output_format=cast(str, settings["output_format"]),
        n=cast(int, settings["n"]),
        image_urls=tuple(cast("tuple[str, ...]", settings["image_urls"])),
    )


@dataclass(frozen=True, slots=True)
class _Combo:
    """One combination of swept values over one set of settings, shared by every prompt
    that has those settings (its jobs share the ``params`` object too)."""

    provider: str
    params: JobParams
    variant: dict[str, str]  # the swept values as Job.variant shows them
    slugs: tuple[str, ...]  # and as the job id shows them
    errors: tuple[tuple[str, str], ...]  # what the provider refuses of these settings
    id_tail: str  # the slugs joined: what follows ``<prompt id>--`` in a job id


# The combinations of one set of settings, and the providers they name.
_Shape = tuple[list[_Combo], tuple[str, ...]]
_Combos = dict[tuple[object, ...], _Shape]
# One combination of a prompt's vars: the prompt, its part of the variant and of the id,
# and what each provider refuses of the prompt.
_Render = tuple[str, dict[str, str], tuple[str, ...], dict[str, list[tuple[str, str]]]]


def _combos(
    base: dict[str, object], axes: list[tuple[str, tuple[object, ...]]], cache: _Combos
) -> _Shape:
    """The combinations of ``axes`` applied to ``base``, in product order, and their
    providers (cached: most prompts of a large batch share their settings)."""
    names = [k for k, _ in axes]
    key = (*names, *base.values())
    shape = cache.get(key)
    if shape is None:
        combos: list[_Combo] = []
        for values in itertools.product(*(v for _, v in axes)):
            settings = {**base, **dict(zip(names, values, strict=True))}
            provider = cast(str, settings["provider"])
            params = _params(settings)
            variant = {name: str(value) for name, value in zip(names, values, strict=True)}
            errors = tuple(params_errors(SPECS[provider], params))
            slugs = _slugs(variant.values())
            combos.append(_Combo(provider, params, variant, slugs, errors, "-".join(slugs)))
        shape = cache[key] = combos, tuple(dict.fromkeys(c.provider for c in combos))
    return shape


def expand_prompt(
    p: ParsedPrompt,
    sweep: SweepAxes,
    log: IssueLog,
    budget: int,
    shared: _Shared,
    cache: _Combos | None = None,
) -> list[Job]:
    """The draft jobs of one prompt (ids not final); problems are logged.

    Problems with a value from ``defaults`` or ``sweep`` go to ``shared`` instead, to be
    reported once for all the prompts they affect. At most ``budget`` jobs are made; a
    prompt that would make more is logged instead. ``cache`` keeps the swept settings
    between prompts.
    """
    template = check_template(p, log)
    if template is None:
        return []
    axes = [(key, values) for key, values in sweep.axes if not p.is_set(key)]
    var_axes = list(p.prompt.vars.items()) if p.prompt.vars else []
    count = math.prod(len(v) for _, v in axes) * math.prod(len(v) for _, v in var_axes)
    if count > budget:
        log.add(
            p.path,
            p.line(),
            p.field(),
            f"expands to {count:,} jobs; a manifest may have at most {MAX_JOBS:,} in total",
        )
        return []
    base, from_defaults = _settings(p, sweep)
    combos, providers = _combos(base, axes, {} if cache is None else cache)
    var_names = [name for name, _ in var_axes]
    # Which errors are the prompt's own: not those of a swept value (or, quirk kept, of a
    # var named like the setting) nor of a value from defaults.
    swept = {*(key for key, _ in axes), *var_names}
    n_images = len(cast("tuple[str, ...]", base["image_urls"]))
    if not var_axes:  # most prompts: one text, the jobs differ by their swept values only
        prompt = template.render({})
        refused = {name: prompt_errors(SPECS[name], prompt, n_images) for name in providers}
        return _plain_jobs(p, combos, prompt, refused, swept, from_defaults, log, shared)
    renders: list[_Render] = []
    for values in itertools.product(*(v for _, v in var_axes)):
        chosen = {name: str(value) for name, value in zip(var_names, values, strict=True)}
        prompt = template.render(chosen)
        refused = {name: prompt_errors(SPECS[name], prompt, n_images) for name in providers}
        renders.append((prompt, chosen, _slugs(chosen.values()), refused))
    line = p.line()
    prompt_id, path = p.prompt_id, p.path
    jobs: list[Job] = []
    for combo in combos:
        for prompt, chosen, slugs, refused in renders:
            errors = refused[combo.provider]
            if combo.errors or errors:
                _report(p, (*combo.errors, *errors), swept, from_defaults, log, shared)
            parts = combo.slugs + slugs
            # Records are read-only: jobs that vary on one side only share its variant.
            if not chosen:
                variant = combo.variant
            elif not combo.variant:
                variant = chosen
            else:
                variant = {**combo.variant, **chosen}
            job_id = f"{prompt_id}--{'-'.join(parts)}" if parts else prompt_id
            provider, params = combo.provider, combo.params
            jobs.append(new_job(job_id, prompt_id, provider, prompt, params, variant, path, line))
    return jobs


def _plain_jobs(
    p: ParsedPrompt,
    combos: list[_Combo],
    prompt: str,
    refused: dict[str, list[tuple[str, str]]],
    swept: set[str],
    from_defaults: set[str],
    log: IssueLog,
    shared: _Shared,
) -> list[Job]:
    """``expand_prompt``'s jobs of a prompt without vars (its loop, with less to do: it
    runs for nearly every job of a large batch)."""
    prompt_id, path, line = p.prompt_id, p.path, p.line()
    jobs: list[Job] = []
    for combo in combos:
        errors = refused[combo.provider]
        if combo.errors or errors:
            _report(p, (*combo.errors, *errors), swept, from_defaults, log, shared)
        job_id = f"{prompt_id}--{combo.id_tail}" if combo.id_tail else prompt_id
        provider, params, variant = combo.provider, combo.params, combo.variant
        jobs.append(new_job(job_id, prompt_id, provider, prompt, params, variant, path, line))
    return jobs


def _report(
    p: ParsedPrompt,
    errors: Iterable[tuple[str, str]],
    swept: set[str],
    from_defaults: set[str],
    log: IssueLog,
    shared: _Shared,
) -> None:
    """Log the ``(setting, message)`` problems of one job of ``p``. Those of a swept value
    or of a value from ``defaults`` go to ``shared``, to be reported once for all the
    prompts they affect."""
    for key, message in errors:
        if key in swept or key in from_defaults:
            field = f"sweep.{key}" if key in swept else f"defaults.{key}"
            affected = shared.setdefault((field, message), [])
            if not affected or affected[-1] is not p:
                affected.append(p)
        else:
            log.add(p.path, p.line(key), p.field(key), message)


def expand(prompts: list[ParsedPrompt], sweep: SweepAxes, log: IssueLog) -> list[Job]:
    """All jobs of all prompts, in manifest order, with final ids; problems are logged.

    Empties ``prompts`` as it goes, so that each prompt is freed once its jobs are made:
    at a million jobs the validated prompts would otherwise stay alive beside them.
    """
    drafts: list[Job] = []
    shared: _Shared = {}
    cache: _Combos = {}
    prompts.reverse()
    while prompts:
        p = prompts.pop()
        drafts.extend(expand_prompt(p, sweep, log, MAX_JOBS - len(drafts), shared, cache))
    for (field, message), affected in shared.items():
        # A value from defaults or sweep is wrong only for some prompts: say which.
        first = affected[0]
        more = f" and {len(affected) - 1} more" if len(affected) > 1 else ""
        log.add(first.path, first.line(), field, f"{message} (prompt {first.prompt_id!r}{more})")
    return assign_ids(drafts)
