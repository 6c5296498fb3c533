"""How jobs and runs end, as the state and the ledger record them: errors and costs."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.errors import ProviderError, StateError, StorageFailed, storage_failure
from pipeline.jobs import Batch, JobStatus
from pipeline.outputs import Output
from pipeline.providers.specs import Cost
from pipeline.store import JobRecord


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
    stopped submitting (``stop_reason``, ``lane_stops``: exit 3). ``storage_failure``:
    the run's own storage failed (then ``stop_reason`` also says how many paid images
    wait for a rerun's download)."""

    completed: int = 0
    failed: int = 0
    pending: int = 0
    stop_reason: str | None = None
    lane_stops: dict[str, str] = field(default_factory=dict)
    storage_failure: str | None = None


def log_outcome(
    log: logging.Logger,
    outcome: RunOutcome,
    failed: Sequence[tuple[str, str]],
    interrupted: bool,
) -> None:
    """``failed``: the batch's failed jobs, (id, error as stored) each."""
    for job_id, error_json in failed:
        error = json.loads(error_json) or {}
        log.info("job %s failed: %s: %s", job_id, error.get("code"), error.get("message"))
    for name, reason in outcome.lane_stops.items():
        log.info("lane %s stopped: %s", name, reason)
    if outcome.stop_reason:
        log.info("stopped submitting: %s", outcome.stop_reason)
    log.info(
        "%s: %d completed, %d failed, %d pending",
        "interrupted" if interrupted else "finished",
        outcome.completed,
        outcome.failed,
        outcome.pending,
    )


def storage_stop(exc: BaseException, output: Output) -> StorageFailed | StateError | None:
    """``exc`` as the run's own storage failing (the state, or the output refusing
    writes), or None."""
    if isinstance(exc, StateError):
        return exc
    return storage_failure(exc, output.location)


def waiting(cause: str, batch: Batch, records: Sequence[JobRecord]) -> str:
    """The stop message of a storage failure: the cause, the paid images waiting, and the
    submits sent as the run stopped (their task is checked for by the rerun)."""
    n = {job.id: job.params.n for job in batch.jobs}
    current = [r for r in records if not r.superseded]
    paid = [r for r in current if r.row.status == JobStatus.SUBMITTED]
    sent = sum(r.row.status == JobStatus.INTENT for r in current)
    images = sum(n.get(r.id, 1) for r in paid)
    unsure = f" (and {sent} submits sent as it stopped, which a rerun looks up)" if sent else ""
    return (
        f"the run's storage failed: {cause}; {images} paid images ({len(paid)} jobs) wait "
        f"for their download{unsure}: fix the storage and run again (nothing is paid twice)"
    )


def exit_code(outcome: RunOutcome, interrupted: bool) -> int:
    """design.md's exit codes."""
    if interrupted:
        return 130
    if outcome.stop_reason is not None or outcome.lane_stops:
        return 3
    if outcome.failed or outcome.pending:
        return 1
    return 0
