"""How jobs and runs end, as the state and the ledger record them: errors and costs."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.errors import ProviderError
from pipeline.providers.specs import Cost


def error_dict(code: str, message: str, http_status: int | None = None) -> dict[str, object]:
    return {"code": code, "message": message, "http_status": http_status}


def provider_error(exc: ProviderError) -> dict[str, object]:
    """The ledger's error: the pipeline's code for classes with a pipeline meaning (auth,
    insufficient_credits, timeout...), the provider's own code otherwise; the provider's
    code is always kept."""
    generic = type(exc) is ProviderError
    error = error_dict(
        exc.code if generic else type(exc).default_code, exc.message, exc.http_status
    )
    if not generic and exc.code != error["code"]:
        error["provider_code"] = exc.code
    return error


def cost_dict(cost: Cost) -> dict[str, object]:
    return {"usd": cost.usd, "credits": cost.credits, "basis": cost.basis}


@dataclass(slots=True)
class RunOutcome:
    """How the run ended: the batch's counts (as ledger.json's totals), and why it
    stopped submitting (``stop_reason``, ``lane_stops``: exit 3)."""

    completed: int = 0
    failed: int = 0
    pending: int = 0
    stop_reason: str | None = None
    lane_stops: dict[str, str] = field(default_factory=dict)
