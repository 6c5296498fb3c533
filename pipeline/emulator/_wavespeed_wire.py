"""WaveSpeed's prediction object and success envelope, shared by its handlers.

Status spelling: ``created`` (queued), ``processing``, ``completed``, ``failed`` (or
``cancelled`` / ``timeout`` for those fates) and ``deleted`` (retention passed: no
outputs any more).
"""

from __future__ import annotations

from typing import Any

from pipeline.emulator._state import EmulatorState, iso_utc
from pipeline.emulator._tasks import Outcome, Phase, Task

PROVIDER = "wavespeed"
MODEL_ROOT = "kwaivgi/kling-image-o3"
STATUS = {
    Phase.QUEUED: "created",
    Phase.RUNNING: "processing",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.DELETED: "deleted",
}
FAILED_STATUS = {Outcome.CANCELLED: "cancelled", Outcome.TIMED_OUT: "timeout"}


def status_of(task: Task, phase: Phase) -> str:
    """The wire status of ``task`` in ``phase``."""
    if phase is Phase.FAILED:
        return FAILED_STATUS.get(task.outcome, "failed")
    return STATUS[phase]


def prediction(state: EmulatorState, task: Task, phase: Phase, origin: str) -> dict[str, Any]:
    """The ``data`` object of a prediction in ``phase`` (image URLs issued now)."""
    done = phase is Phase.COMPLETED
    n = task.spec.n
    data: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "outputs": [state.image_url(task, k, origin) for k in range(1, n + 1)] if done else [],
        "urls": {"get": f"{origin}/api/v3/predictions/{task.id}/result"},
        "has_nsfw_contents": [False] * n if done else [],
        "status": status_of(task, phase),
        "created_at": iso_utc(task.created_wall),
        "error": task.error_message if phase is Phase.FAILED else "",
        "timings": {"inference": task.inference_ms() if phase.terminal else 0},
    }
    if phase is Phase.FAILED and task.error_code is not None:
        data["code"] = task.error_code
    return data


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    """The success envelope around ``data``."""
    return {"code": 200, "message": "success", "data": data}
