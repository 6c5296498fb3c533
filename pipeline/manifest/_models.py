"""The manifest's shape as pydantic models: the one source of its JSON Schema.

These models check everything that does not depend on which provider a job lands on:
types, enums (the union over all providers), ranges, URL and id syntax (field types in
:mod:`pipeline.manifest._fields`). Checks that need the resolved job (``4k`` on
``skills_video``, prompt length after ``vars``, ``@ImageN``) live in
:mod:`pipeline.manifest._validate`. The loader maps each pydantic error back to a YAML line
and a field path (see :mod:`pipeline.manifest._issues`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pipeline.manifest._fields import (
    AspectRatio,
    AspectRatioList,
    BaseUrl,
    BatchName,
    Count,
    CountList,
    ImageUrls,
    NonBlank,
    OutputFormat,
    OutputFormatList,
    PositiveFloat,
    PromptId,
    Provider,
    ProviderList,
    Resolution,
    ResolutionList,
    Vars,
    WholeAtLeastOne,
)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )


class Settings(_Model):
    """Job settings that ``defaults``, a prompt or a CSV row may set."""

    provider: Provider | None = Field(default=None, description="Which API runs the job.")
    aspect_ratio: AspectRatio | None = Field(
        default=None, description="Aspect ratio; quote it in YAML."
    )
    resolution: Resolution | None = Field(
        default=None, description="1k | 2k | 4k (skills_video: 1k | 2k); case-insensitive."
    )
    output_format: OutputFormat | None = Field(
        default=None, description="png | jpeg | webp ('jpg' is read as jpeg); case-insensitive."
    )
    n: Count | None = Field(
        default=None, description="Images per job: wavespeed 1-9, skills_video 1-4."
    )
    image_urls: ImageUrls | None = Field(
        default=None,
        description="Reference images (http/https), referenced as @Image1.. or @Image.",
    )


class Prompt(Settings):
    """One prompt: its text, optional id and template variables, and any setting."""

    id: PromptId | None = Field(
        default=None, description="Stable id for job ids and file names; default p<position>."
    )
    prompt: NonBlank = Field(
        description="The prompt, at most 2500 characters after expanding vars; "
        "{name} inserts a var, {{ and }} are literal braces."
    )
    vars: Vars | None = Field(
        default=None,
        description="Template variables: one job variant per value (cartesian product).",
    )


def _bare_prompt(value: Any) -> Any:
    # A bare string (or number) in `prompts` is the prompt text itself.
    if isinstance(value, str):
        return {"prompt": value}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"prompt": str(value)}
    if isinstance(value, dict | BaseModel):
        return value
    if value is None or isinstance(value, list):
        got = "null" if value is None else "a list"
    else:
        got = str(value).lower() if isinstance(value, bool) else type(value).__name__
    raise ValueError(f"expected a prompt (a string, or a mapping with 'prompt'), got {got}")


PromptEntry = Annotated[Prompt, BeforeValidator(_bare_prompt, json_schema_input_type=str | Prompt)]


class ProviderOptions(_Model):
    """Per-provider limits and endpoint (``providers.<name>``)."""

    requests_per_second: PositiveFloat | None = Field(default=None, description="Submit rate cap.")
    max_concurrent: WholeAtLeastOne | None = Field(
        default=None, description="Jobs in flight at once."
    )
    job_timeout_s: PositiveFloat | None = Field(
        default=None, description="Give up on a job after this many seconds."
    )
    usd_per_credit: PositiveFloat | None = Field(
        default=None, description="Dollar value of one credit (skills_video bills in credits)."
    )
    tier: Literal["bronze", "silver", "gold", "ultra"] | None = Field(
        default=None,
        description="The account's tier (wavespeed): its images per minute and concurrent "
        "tasks, unless given.",
    )
    images_per_minute: PositiveFloat | None = Field(
        default=None,
        description="Images the account may generate per minute (a job counts its n).",
    )
    stream: bool | None = Field(
        default=None,
        description="Follow each task on the provider's event stream instead of polling "
        "(skills_video).",
    )
    base_url: BaseUrl | None = Field(
        default=None,
        description="API base URL without the /api/... path (environment overrides it).",
    )


class Budget(_Model):
    """Spend caps: the run never starts a job that could take spend past either."""

    max_usd: PositiveFloat | None = Field(default=None, description="Cap in US dollars.")
    max_credits: PositiveFloat | None = Field(default=None, description="Cap in provider credits.")


class Sweep(_Model):
    """Axes to sweep: every prompt runs once per combination (in the order written)."""

    provider: ProviderList | None = Field(default=None, description="Providers to compare.")
    aspect_ratio: AspectRatioList | None = Field(default=None, description="Aspect ratios.")
    resolution: ResolutionList | None = Field(default=None, description="Resolutions.")
    output_format: OutputFormatList | None = Field(default=None, description="Output formats.")
    n: CountList | None = Field(default=None, description="Images per job.")


class Manifest(_Model):
    """A batch of image-generation jobs: prompts x sweep variants."""

    model_config = ConfigDict(title="pipeline manifest")

    name: BatchName = Field(description="Batch name: letters, digits, '-', '_'.")
    output_dir: NonBlank | None = Field(
        default=None, description="Output folder (default out/<name>); --out overrides it."
    )
    defaults: Settings | None = Field(default=None, description="Settings applied to every prompt.")
    providers: dict[Provider, ProviderOptions] | None = Field(
        default=None, description="Per-provider rate, concurrency, timeout, price and base URL."
    )
    budget: Budget | None = Field(default=None, description="Spend caps.")
    sweep: Sweep | None = Field(
        default=None, description="Cartesian product applied to every prompt."
    )
    prompts: list[PromptEntry] | None = Field(
        default=None, description="Prompts: a string or a mapping with prompt and settings."
    )
    prompts_file: NonBlank | None = Field(
        default=None,
        description="Extra prompts: a CSV file (or a YAML list), relative to this file.",
    )


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a YAML manifest, with enums and descriptions."""
    schema = Manifest.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }
