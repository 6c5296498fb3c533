"""The manifest's field types: allowed values, syntax checks and their JSON Schema.

Each type is an ``Annotated`` alias whose validators raise ``ValueError`` with a message
written for the user (``'8k' is not one of 1k, 2k, 4k``) and whose JSON Schema carries the
enum or pattern. Allowed values come from :mod:`pipeline.providers.specs`; enums are the
union over all providers (per-provider limits are checked on resolved jobs).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from pipeline.providers.specs import ASPECT_RATIOS, MAX_IMAGE_URLS, OUTPUT_FORMATS, SPECS

PROVIDERS: tuple[str, ...] = tuple(SPECS)
RESOLUTIONS: tuple[str, ...] = tuple(sorted({r for s in SPECS.values() for r in s.resolutions}))
N_MIN = min(s.n_min for s in SPECS.values())
N_MAX = max(s.n_max for s in SPECS.values())
MAX_URLS = max(MAX_IMAGE_URLS, *(s.max_image_urls for s in SPECS.values()))
# The job settings a sweep may vary, in the order the built-in defaults are listed.
SWEEP_AXES: tuple[str, ...] = ("provider", "aspect_ratio", "resolution", "output_format", "n")
BUILTIN_DEFAULTS: dict[str, object] = {
    "provider": "wavespeed",
    "aspect_ratio": "1:1",
    "resolution": "1k",
    "output_format": "png",
    "n": 1,
}

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(allowed: Sequence[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(
                f"{value!r} is not one of {', '.join(allowed)}{suggest(value, allowed)}"
            )
        return value

    return check


def _folded(aliases: dict[str, str] | None = None) -> Callable[[Any], Any]:
    # Enum values are case-insensitive: users write 2K because the skills.video docs do.
    def fold(value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower()
            return (aliases or {}).get(key, key)
        return value

    return fold


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads `true` as 1; in a manifest that is always a typo.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _base_url(value: str) -> str:
    value = _http_url(value).rstrip("/")
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a base URL has no query or fragment")
    if parts.path == "/api" or parts.path.startswith("/api/"):
        raise ValueError(f"{value!r}: give the base URL without the /api/... path")
    return value


def _not_an_axis(value: str) -> str:
    # Var values and swept settings share Job.variant, so their names must not clash.
    if value in SWEEP_AXES:
        raise ValueError(f"{value!r} is a job setting; give the var another name")
    return value


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _unique(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate value {v!r}")
        seen.add(v)
    return values


def _as_list(value: Any) -> Any:
    return (
        [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value
    )


def _enum(values: Sequence[str], accepted: Sequence[str] = ()) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": [*values, *accepted]})


Provider = Annotated[str, AfterValidator(_one_of(PROVIDERS)), _enum(PROVIDERS)]
AspectRatio = Annotated[str, AfterValidator(_one_of(ASPECT_RATIOS)), _enum(ASPECT_RATIOS)]
Resolution = Annotated[
    str,
    BeforeValidator(_folded()),
    AfterValidator(_one_of(RESOLUTIONS)),
    _enum(RESOLUTIONS, [r.upper() for r in RESOLUTIONS]),
]
OutputFormat = Annotated[
    str,
    BeforeValidator(_folded({"jpg": "jpeg"})),
    AfterValidator(_one_of(OUTPUT_FORMATS)),
    _enum(OUTPUT_FORMATS, ["jpg"]),
]
Count = Annotated[int, Field(ge=N_MIN, le=N_MAX), BeforeValidator(_no_bool)]
PositiveFloat = Annotated[float, Field(gt=0), BeforeValidator(_no_bool)]
HttpUrl = Annotated[
    str,
    AfterValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://"}),
]
BaseUrl = Annotated[
    str,
    AfterValidator(_base_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://"}),
]
PromptId = Annotated[
    str,
    AfterValidator(_matches(ID_RE, "id (1-64 of letters, digits, '.', '_', '-'; no leading dot)")),
    WithJsonSchema({"type": "string", "pattern": f"^{ID_RE.pattern}$"}),
]
VarName = Annotated[
    str,
    AfterValidator(_matches(VAR_RE, "var name (letters, digits, '_'; not starting with a digit)")),
    AfterValidator(_not_an_axis),
    WithJsonSchema({"type": "string", "pattern": f"^{VAR_RE.pattern}$"}),
]
VarValues = Annotated[
    list[str],
    BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
    Field(min_length=1),
    AfterValidator(_unique),
]


BatchName = Annotated[
    str,
    AfterValidator(_matches(NAME_RE, "name (letters, digits, '-', '_')")),
    WithJsonSchema({"type": "string", "pattern": f"^{NAME_RE.pattern}$"}),
]
NonBlank = Annotated[str, AfterValidator(_non_blank)]
WholeAtLeastOne = Annotated[int, Field(ge=1), BeforeValidator(_no_bool)]
ImageUrls = Annotated[list[HttpUrl], Field(max_length=MAX_URLS)]
ProviderList = Annotated[list[Provider], Field(min_length=1), AfterValidator(_unique)]
AspectRatioList = Annotated[list[AspectRatio], Field(min_length=1), AfterValidator(_unique)]
ResolutionList = Annotated[list[Resolution], Field(min_length=1), AfterValidator(_unique)]
OutputFormatList = Annotated[list[OutputFormat], Field(min_length=1), AfterValidator(_unique)]
CountList = Annotated[list[Count], Field(min_length=1), AfterValidator(_unique)]
Vars = Annotated[
    dict[VarName, VarValues],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": f"^{VAR_RE.pattern}$"},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
        }
    ),
]
