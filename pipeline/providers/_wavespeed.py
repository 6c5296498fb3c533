"""WaveSpeedAI v3 adapter for Kling Image O3 (text-to-image, and edit when a job has images).

Wire: ``POST /api/v3/kwaivgi/kling-image-o3/text-to-image`` (or ``.../edit`` with ``images``),
``GET /api/v3/predictions/{id}/result``, ``POST /api/v3/predictions/delete {ids}``. Every
answer is an envelope ``{code, message, data}``; ``data`` is the prediction.

Prediction status -> :class:`TaskState`: ``created`` -> QUEUED; ``processing`` -> RUNNING;
``completed`` -> COMPLETED; ``failed``/``cancelled``/``timeout``/``deleted`` -> FAILED. A
status this module does not know is read as RUNNING (a new intermediate state must not break
runs; the job timeout still bounds it).

A failed task's ``error_code`` is ``data.code`` when present, else the status; whether running
the job again may succeed (``TaskStatus.retryable``):

======  =====================  =========  ============================================
code    meaning                retryable  why
======  =====================  =========  ============================================
1200    content moderation     no         the same prompt is rejected again
1400    missing parameter      no         the same request is wrong again
1401    invalid parameter      no         idem
1402    media access failed    no         the reference image URL is broken
1403    task execution failed  yes        transient; the scheduler caps attempts
1405    task failed            yes        idem
5000    internal error         yes        transient provider fault
5003    service unavailable    yes        idem
5004    timeout                yes        idem
``timeout`` status, no code    yes        as 5004
other / ``cancelled`` /        no         unknown or deliberate: do not pay again
``deleted`` / ``failed``
======  =====================  =========  ============================================

Cost is the published price table: ``usd_per_image[resolution]`` x images returned when
completed, else x ``n``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pipeline.jobs import Job
from pipeline.providers._body import ErrorBody, Fields
from pipeline.providers._http import HttpAdapter, error_for_status
from pipeline.providers.base import ImageRef, TaskState, TaskStatus
from pipeline.providers.specs import WAVESPEED, Cost, ProviderSpec

TEXT_TO_IMAGE_PATH = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
EDIT_PATH = "/api/v3/kwaivgi/kling-image-o3/edit"
RESULT_PATH = "/api/v3/predictions/{id}/result"
DELETE_PATH = "/api/v3/predictions/delete"

_STATES: dict[str, TaskState] = {
    "created": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.COMPLETED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.FAILED,
    "canceled": TaskState.FAILED,
    "timeout": TaskState.FAILED,
    "deleted": TaskState.FAILED,
}
RETRYABLE_CODES = frozenset({"1403", "1405", "5000", "5003", "5004"})


def request_for(job: Job) -> tuple[str, dict[str, Any]]:
    """The path and JSON body that submit ``job``. Pure; raises nothing."""
    p = job.params
    body: dict[str, Any] = {
        "prompt": job.prompt,
        # The docs disagree on the default (16:9 vs 3:4): always send it.
        "aspect_ratio": p.aspect_ratio,
        "resolution": p.resolution.lower(),
        "num_images": p.n,
        "output_format": p.output_format,
    }
    if p.image_urls:
        body["images"] = list(p.image_urls)
        return EDIT_PATH, body
    return TEXT_TO_IMAGE_PATH, body


def _image(value: object, data: Fields, index: int) -> ImageRef:
    if isinstance(value, str) and value:
        return ImageRef(url=value)
    if isinstance(value, dict):
        item = data.child(value, f"data.outputs[{index}]")
        return ImageRef(url=item.req_str("url"), content_type=item.opt_str("content_type"))
    raise data.error(f"data.outputs[{index}] is not an image URL")


def parse_prediction(data: Fields) -> TaskStatus:
    """A prediction object (the envelope's ``data``) as a :class:`TaskStatus`.

    Raises ``ProviderError(code="bad_response")`` when ``id`` or ``status`` is missing or
    ill-typed, or ``outputs`` is not a list of URLs.
    """
    remote_id = data.req_str("id")
    status = data.req_str("status").lower()
    state = _STATES.get(status, TaskState.RUNNING)
    outputs = data.opt_list("outputs")
    if state is TaskState.COMPLETED:
        if outputs is None:
            raise data.error("data.outputs is missing on a completed prediction")
        images = tuple(_image(v, data, i) for i, v in enumerate(outputs))
        return TaskStatus(remote_id=remote_id, state=state, images=images)
    if state is TaskState.FAILED:
        code = data.opt_str("code")
        return TaskStatus(
            remote_id=remote_id,
            state=state,
            error_code=code or status,
            error_message=data.opt_str("error") or data.opt_str("message"),
            retryable=(code in RETRYABLE_CODES) if code else status == "timeout",
        )
    return TaskStatus(remote_id=remote_id, state=state)


def unwrap(body: object, *, creates_task: bool = False) -> Fields:
    """The envelope's ``data`` object.

    Raises the mapped HTTP error when a 200 envelope carries an error ``code`` and no data,
    and ``bad_response`` when there is no ``data`` object.
    """
    envelope = Fields(body, provider=WAVESPEED.name, creates_task=creates_task)
    data = envelope.opt_obj("data")
    code = envelope.opt_int("code")
    if data is None and code is not None and code >= 400:
        raise error_for_status(
            WAVESPEED.name,
            code,
            ErrorBody(code=str(code), message=envelope.opt_str("message"), structured=True),
            creates_task=creates_task,
        )
    return envelope.req_obj("data")


class WaveSpeedAdapter(HttpAdapter):
    """Submit, poll, cancel and cost Kling Image O3 tasks on WaveSpeedAI.

    Raises only ``ProviderError`` subclasses (see :mod:`pipeline.providers._http`).
    ``usd_per_credit`` is accepted for a uniform constructor and ignored (prices are in USD).
    """

    spec: ProviderSpec = WAVESPEED

    def __repr__(self) -> str:
        return f"WaveSpeedAdapter({self._http!r})"

    async def submit(self, job: Job) -> TaskStatus:
        """Create the task. Retryable errors only when no task can exist; a lost reply or
        an unreadable 200 raises ``OutcomeUnknown``."""
        path, body = request_for(job)
        answer = await self._http.request("POST", path, json_body=body, creates_task=True)
        return parse_prediction(unwrap(answer, creates_task=True))

    async def poll(self, remote_id: str) -> TaskStatus:
        """The task's current status. Network and 5xx errors are retryable."""
        path = RESULT_PATH.format(id=quote(remote_id, safe=""))
        return parse_prediction(unwrap(await self._http.request("GET", path)))

    async def cancel(self, remote_id: str) -> bool:
        """Delete the task (WaveSpeed has no cancel). True when the provider deleted it.

        Raises ``ProviderError`` subclasses like any request.
        """
        answer = await self._http.request("POST", DELETE_PATH, json_body={"ids": [remote_id]})
        data = unwrap(answer)
        deleted = data.opt_list("ids")
        # The answer lists the ids it deleted; an unknown id is simply absent.
        return deleted is None or remote_id in deleted

    def cost(self, job: Job, status: TaskStatus) -> Cost:
        """Price table x images returned (completed) or x ``n`` (otherwise)."""
        assert self.spec.usd_per_image is not None
        count = len(status.images) if status.state is TaskState.COMPLETED else job.params.n
        rate = self.spec.usd_per_image[job.params.resolution.lower()]
        return Cost(usd=round(rate * count, 6), credits=None, basis="price_table")
