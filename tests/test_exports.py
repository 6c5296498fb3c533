"""The public names: ``import pipeline`` exposes exactly these (as httpx and trio pin
theirs), each one resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pipeline

PUBLIC = [
    "AuthError",
    "Batch",
    "BatchStatus",
    "Budget",
    "BudgetExhausted",
    "DownloadError",
    "EmulatorConfig",
    "ErrorCode",
    "ExportResult",
    "FaultProfile",
    "Flag",
    "InsufficientCredits",
    "Job",
    "JobParams",
    "JobStatus",
    "ManifestError",
    "ManifestIssue",
    "OutcomeUnknown",
    "PipelineError",
    "Plan",
    "PlanRow",
    "ProviderError",
    "ProviderSettings",
    "ProviderTimeout",
    "ProviderUnreachable",
    "RateLimited",
    "RunResult",
    "StateError",
    "StorageFailed",
    "UsageError",
    "arun",
    "emulated",
    "export",
    "load_manifest",
    "plan",
    "report",
    "run",
    "status",
]


def test_all_is_pinned() -> None:
    """__all__ is exactly the documented list, sorted."""
    assert pipeline.__all__ == PUBLIC


def test_every_public_name_resolves_and_nothing_else_is_listed() -> None:
    """Each name in __all__ is an attribute; dir() shows no other public name."""
    for name in PUBLIC:
        assert getattr(pipeline, name) is not None, name
    assert [n for n in dir(pipeline) if not n.startswith("_")] == PUBLIC


def test_errors_form_one_tree() -> None:
    """Every exported exception derives from PipelineError."""
    exported = [getattr(pipeline, name) for name in PUBLIC]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, BaseException)]
    assert len(errors) == 14
    assert all(issubclass(e, pipeline.PipelineError) for e in errors)


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A name that is not public raises AttributeError naming it."""
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = pipeline.no_such_name


def test_import_loads_neither_the_network_stack_nor_the_manifest_models() -> None:
    """``import pipeline`` is cheap: aiohttp, pydantic and rich load on first use."""
    code = (
        "import sys, pipeline; "
        "print(sorted(m for m in ('aiohttp', 'pydantic', 'rich', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_run_does_not_load_the_export_formats() -> None:
    """The engine and the ledger load without pyarrow: only an export brings it in."""
    code = (
        "import sys, pipeline.engine, pipeline.ledger, pipeline.cli; "
        "print('pyarrow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
