"""pipeline: async batch generation for image APIs, as a library.

::

    import pipeline

    result = pipeline.run("jobs/demo.yaml", out="out/demo", emulate=True)   # blocking
    print(result.completed, result.cost_usd, result.exit_code)

    async def main() -> None:                                  # inside anyio / asyncio
        result = await pipeline.arun({"name": "ab", "prompts": ["a red fox"]}, emulate=True)

Everything a user needs is here (``__all__``); the subpackages are the implementation.
Names load on first use, so ``import pipeline`` stays cheap (the network stack loads
only when a run sends something).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.errors import (
    AuthError,
    BudgetExhausted,
    DownloadError,
    ErrorCode,
    InsufficientCredits,
    ManifestError,
    ManifestIssue,
    OutcomeUnknown,
    PipelineError,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    StateError,
    StorageFailed,
    UsageError,
)
from pipeline.jobs import Batch, Budget, Flag, Job, JobParams, JobStatus, ProviderSettings

if TYPE_CHECKING:
    from pipeline._library import (
        BatchStatus,
        RunResult,
        arun,
        emulated,
        export,
        plan,
        report,
        run,
        status,
    )
    from pipeline.emulator import EmulatorConfig, FaultProfile
    from pipeline.ledger import ExportResult
    from pipeline.manifest import Plan, PlanRow, load_manifest

_LAZY = {
    "BatchStatus": "pipeline._library",
    "RunResult": "pipeline._library",
    "arun": "pipeline._library",
    "emulated": "pipeline._library",
    "export": "pipeline._library",
    "plan": "pipeline._library",
    "report": "pipeline._library",
    "run": "pipeline._library",
    "status": "pipeline._library",
    "EmulatorConfig": "pipeline.emulator",
    "FaultProfile": "pipeline.emulator",
    "ExportResult": "pipeline.ledger",
    "load_manifest": "pipeline.manifest",
    "Plan": "pipeline.manifest",
    "PlanRow": "pipeline.manifest",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once, then a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
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
