"""The manifest: YAML or CSV in, a validated and expanded :class:`~pipeline.jobs.Batch` out.

Public surface::

    load_manifest(path, *, output_dir=None) -> Batch    # raises ManifestError, nothing else
    manifest_schema() -> dict                          # JSON Schema of the YAML manifest

Modules, one concept each: ``fields`` (field types: allowed values, syntax, schema),
``models`` (pydantic models, the schema), ``source`` (files, YAML with line marks),
``csvfile`` (CSV rows), ``entries`` (prompts as written), ``validate`` (templates, image
references, provider limits), ``expand`` (jobs and their ids), ``issues`` (problems with
file, line and field), ``load`` (the pipeline of these).
"""

from __future__ import annotations

from pipeline.manifest._csvfile import COLUMNS
from pipeline.manifest._expand import MAX_JOBS, slug
from pipeline.manifest._fields import BUILTIN_DEFAULTS, SWEEP_AXES
from pipeline.manifest._ids import MAX_ID
from pipeline.manifest._load import load_manifest
from pipeline.manifest._models import manifest_schema
from pipeline.manifest._plan import Plan, PlanRow, make_plan, plan_to_json
from pipeline.manifest._source import MAX_ALIAS_VALUES, MAX_BYTES

__all__ = [
    "BUILTIN_DEFAULTS",
    "COLUMNS",
    "MAX_ALIAS_VALUES",
    "MAX_BYTES",
    "MAX_ID",
    "MAX_JOBS",
    "SWEEP_AXES",
    "Plan",
    "PlanRow",
    "load_manifest",
    "make_plan",
    "manifest_schema",
    "plan_to_json",
    "slug",
]
