"""Checks beyond the models: prompt templates, image references, provider limits, ids.

Templates: ``{name}`` inserts a var, ``{{`` and ``}}`` are literal braces; any other brace
is an error. Image references: ``@Image1``..``@ImageN`` must be within ``image_urls``, and a
bare ``@Image`` needs exactly one image. Provider limits are those of
:data:`pipeline.providers.specs.SPECS`, checked on every resolved job.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from pipeline.jobs import JobParams
from pipeline.manifest._entries import ParsedPrompt
from pipeline.manifest._issues import IssueLog
from pipeline.providers.specs import SPECS, ProviderSpec

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
_IMAGE_REF = re.compile(r"@Image(\d*)(?![A-Za-z_])")


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed prompt: literal text and var names, in order."""

    pieces: tuple[tuple[bool, str], ...]  # (is_var, text or var name)

    @property
    def names(self) -> tuple[str, ...]:
        """Var names used, in order of first use."""
        return tuple(dict.fromkeys(text for is_var, text in self.pieces if is_var))

    def render(self, values: dict[str, str]) -> str:
        """The prompt with each ``{name}`` replaced by ``values[name]``."""
        if len(self.pieces) == 1 and not self.pieces[0][0]:
            return self.pieces[0][1]  # plain text (most prompts)
        return "".join(values[text] if is_var else text for is_var, text in self.pieces)


def parse_template(text: str) -> tuple[Template, list[str]]:
    """Parse ``text``; the list holds a message per stray brace (empty when valid)."""
    if "{" not in text and "}" not in text:  # most prompts: plain text, no vars
        return Template(((False, text),) if text else ()), []
    pieces: list[tuple[bool, str]] = []
    errors: list[str] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if match.group(1) is not None:
            pieces.append((False, "".join(literal)))
            literal = []
            pieces.append((True, match.group(1)))
        elif token in ("{{", "}}"):
            literal.append(token[0])
        else:
            errors.append(
                f"unmatched {token!r} at character {match.start() + 1}; write {token * 2!r} "
                "for a literal brace or {name} for a var"
            )
    literal.append(text[pos:])
    pieces.append((False, "".join(literal)))
    return Template(tuple(p for p in pieces if p[0] or p[1])), errors


def check_template(p: ParsedPrompt, log: IssueLog) -> Template | None:
    """Parse the prompt's template and check it against its vars; ``None`` if invalid."""
    template, errors = parse_template(p.prompt.prompt)
    for message in errors:
        log.add(p.path, p.line("prompt"), p.field("prompt"), message)
    defined = p.prompt.vars or {}
    for name in template.names:
        if name not in defined:
            hint = f"; vars defines {', '.join(defined)}" if defined else "; add it under vars"
            log.add(p.path, p.line("prompt"), p.field("prompt"), f"{{{name}}} is not defined{hint}")
            errors.append(name)
    for name in defined:
        if name not in template.names:
            log.add(
                p.path,
                p.line("vars", name),
                p.field("vars", name),
                f"var {name!r} is not used in the prompt (write {{{name}}} where it goes)",
            )
            errors.append(name)
    return None if errors else template


def image_ref_errors(prompt: str, n_images: int) -> list[str]:
    """Messages for ``@ImageN`` / ``@Image`` references that ``n_images`` cannot satisfy."""
    errors: list[str] = []
    for match in _IMAGE_REF.finditer(prompt):
        ref, digits = match.group(0), match.group(1)
        if n_images == 0:
            errors.append(f"{ref} refers to a reference image, but image_urls is not set")
        elif not digits:
            if n_images != 1:
                errors.append(
                    f"{ref} needs exactly one image_url (there are {n_images}); "
                    f"use @Image1..@Image{n_images}"
                )
        elif not 1 <= int(digits) <= n_images:
            errors.append(f"{ref} is out of range: there are {n_images} image_urls")
    return list(dict.fromkeys(errors))


def params_errors(spec: ProviderSpec, params: JobParams) -> list[tuple[str, str]]:
    """``(setting, message)`` for each way a job's settings break ``spec``'s limits
    (with ``prompt_errors``, all the ways a resolved job can; a batch's jobs share a few
    settings, checked once each)."""
    out = list(
        settings_errors(
            spec.name, params.resolution, params.aspect_ratio, params.output_format, params.n
        )
    )
    if len(params.image_urls) > spec.max_image_urls:
        out.append(
            (
                "image_urls",
                f"{len(params.image_urls)} image_urls; {spec.name} takes at most "
                f"{spec.max_image_urls}",
            )
        )
    return out


def prompt_errors(spec: ProviderSpec, prompt: str, n_images: int) -> list[tuple[str, str]]:
    """``(setting, message)`` for each way a job's prompt (with ``n_images`` reference
    images) breaks ``spec``'s limits."""
    out: list[tuple[str, str]] = []
    if not prompt.strip():
        out.append(("prompt", "is empty after expanding vars"))
    elif len(prompt) > spec.max_prompt_chars:
        out.append(
            (
                "prompt",
                f"is {len(prompt)} characters (after expanding vars); {spec.name} takes at most "
                f"{spec.max_prompt_chars}",
            )
        )
    if "@Image" in prompt:
        out.extend(("prompt", m) for m in image_ref_errors(prompt, n_images))
    return out


@functools.lru_cache(maxsize=1024)
def settings_errors(
    provider: str, resolution: str, aspect_ratio: str, output_format: str, n: int
) -> tuple[tuple[str, str], ...]:
    """Enum and range problems of one combination of settings on ``provider`` (cached: a
    batch repeats a handful of combinations over and over)."""
    spec = SPECS[provider]
    out: list[tuple[str, str]] = []
    where = f"for {spec.name}"
    if resolution not in spec.resolutions:
        allowed = ", ".join(spec.resolutions)
        out.append(("resolution", f"{resolution!r} is not one of {allowed} {where}"))
    if aspect_ratio not in spec.aspect_ratios:
        allowed = ", ".join(spec.aspect_ratios)
        out.append(("aspect_ratio", f"{aspect_ratio!r} is not one of {allowed} {where}"))
    if output_format not in spec.output_formats:
        allowed = ", ".join(spec.output_formats)
        out.append(("output_format", f"{output_format!r} is not one of {allowed} {where}"))
    if not spec.n_min <= n <= spec.n_max:
        out.append(("n", f"{n} is not within {spec.n_min}..{spec.n_max} {where}"))
    return tuple(out)


def check_unique_ids(prompts: list[ParsedPrompt], log: IssueLog) -> None:
    """Two prompts with the same id (given or default ``p<n>``) are an error."""
    first: dict[str, ParsedPrompt] = {}
    for p in prompts:
        other = first.setdefault(p.prompt_id, p)
        if other is p:
            continue
        where = f"{other.field() or 'the row'} on line {other.line()}"
        if other.path != p.path:
            where += f" of {other.path}"
        if p.prompt.id is not None:
            log.add(
                p.path, p.line("id"), p.field("id"), f"duplicate id {p.prompt_id!r} (also {where})"
            )
        else:
            log.add(
                p.path,
                p.line(),
                p.field(),
                f"its default id {p.prompt_id!r} is already used by {where}; give it an id",
            )
