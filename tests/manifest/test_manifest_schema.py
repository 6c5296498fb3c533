"""The JSON Schema: up to date on disk, standard keywords only, and true to the examples."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.manifest import manifest_schema
from pipeline.providers.specs import ASPECT_RATIOS, PROVIDER_NAMES

ROOT = Path(__file__).parents[2]
SCHEMA_FILE = ROOT / "schema" / "manifest.schema.json"
ANNOTATIONS = {"title", "description", "default", "format", "$schema", "$defs"}


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    """A small JSON Schema (2020-12 subset) validator: the keywords our schema uses."""
    errors: list[str] = []
    for key, rule in schema.items():
        if key in ANNOTATIONS:
            continue
        if key == "$ref":
            target = root
            for part in rule.removeprefix("#/").split("/"):
                target = target[part]
            errors += _check(value, target, root, where)
        elif key == "anyOf":
            if all(_check(value, option, root, where) for option in rule):
                errors.append(f"{where}: matches none of anyOf")
        elif key == "type":
            kinds = {
                "string": isinstance(value, str),
                "integer": isinstance(value, int) and not isinstance(value, bool),
                "number": isinstance(value, int | float) and not isinstance(value, bool),
                "array": isinstance(value, list),
                "object": isinstance(value, dict),
                "null": value is None,
                "boolean": isinstance(value, bool),
            }
            if not kinds[rule]:
                errors.append(f"{where}: not {rule}")
        elif key == "enum":
            if value not in rule:
                errors.append(f"{where}: {value!r} not in enum")
        elif key == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                errors.append(f"{where}: {value!r} does not match {rule}")
        elif key in ("minimum", "maximum", "exclusiveMinimum"):
            if isinstance(value, int | float):
                ok = {
                    "minimum": value >= rule,
                    "maximum": value <= rule,
                    "exclusiveMinimum": value > rule,
                }[key]
                if not ok:
                    errors.append(f"{where}: {value} breaks {key} {rule}")
        elif key in ("minItems", "maxItems"):
            if isinstance(value, list) and not (
                len(value) >= rule if key == "minItems" else len(value) <= rule
            ):
                errors.append(f"{where}: {key} {rule}")
        elif key == "items":
            for i, item in enumerate(value if isinstance(value, list) else []):
                errors += _check(item, rule, root, f"{where}[{i}]")
        elif key == "required":
            errors += [f"{where}: missing {k}" for k in rule if k not in value]
        elif key in ("properties", "additionalProperties", "patternProperties", "propertyNames"):
            if isinstance(value, dict):
                errors += _check_object(value, key, rule, schema, root, where)
        else:
            raise AssertionError(f"unexpected JSON Schema keyword {key!r} at {where}")
    return errors


def _check_object(
    value: dict[str, Any],
    key: str,
    rule: Any,
    schema: dict[str, Any],
    root: dict[str, Any],
    where: str,
) -> list[str]:
    errors: list[str] = []
    props = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for name, item in value.items():
        at = f"{where}.{name}"
        if key == "properties" and name in rule:
            errors += _check(item, rule[name], root, at)
        elif key == "patternProperties":
            for pattern, sub in rule.items():
                if re.search(pattern, name):
                    errors += _check(item, sub, root, at)
        elif key == "propertyNames":
            errors += _check(name, rule, root, at)
        elif key == "additionalProperties":
            matched = name in props or any(re.search(p, name) for p in patterns)
            if rule is False and not matched:
                errors.append(f"{at}: not allowed")
            elif isinstance(rule, dict) and not matched:
                errors += _check(item, rule, root, at)
    return errors


def validate(value: Any) -> list[str]:
    """Errors of ``value`` against the manifest schema (empty when valid)."""
    schema = manifest_schema()
    return _check(value, schema, schema, "$")


def test_schema_file_is_up_to_date() -> None:
    """schema/manifest.schema.json is exactly what manifest_schema() generates."""
    on_disk = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert on_disk == manifest_schema(), "regenerate: pipeline schema > schema/manifest.schema.json"


def test_schema_has_enums_and_descriptions() -> None:
    """Fields carry descriptions, and enums list providers and aspect ratios."""
    text = json.dumps(manifest_schema())
    prompt = manifest_schema()["$defs"]["Prompt"]["properties"]
    assert all("description" in field for field in prompt.values())
    assert {"provider", "aspect_ratio", "resolution", "output_format", "n", "vars"} <= set(prompt)
    assert json.dumps(list(PROVIDER_NAMES)) in text
    assert json.dumps(list(ASPECT_RATIOS)) in text
    assert manifest_schema()["required"] == ["name"]


@pytest.mark.parametrize("name", ["demo.yaml", "sweep.yaml", "nightly.yaml"])
def test_examples_validate_against_schema(name: str) -> None:
    """Every example manifest is valid under the schema (as an editor would check it)."""
    path = ROOT / "jobs" / name
    assert path.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../schema/manifest.schema.json"
    )
    assert validate(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(
    "document",
    [
        {"prompts": ["x"]},
        {"name": "x", "promts": ["x"]},
        {"name": "x", "prompts": [{"prompt": "x", "resolution": "8k"}]},
        {"name": "x", "sweep": {"provider": []}},
        {"name": "x", "providers": {"dalle": {}}},
        {"name": "x", "budget": {"max_usd": 0}},
        {"name": "x", "prompts": [{"prompt": "x", "vars": {"1bad": ["a"]}}]},
        {"name": "bad name"},
    ],
)
def test_schema_rejects_invalid_documents(document: dict[str, Any]) -> None:
    """The schema is not vacuous: typical mistakes fail it too."""
    assert validate(document) != []
