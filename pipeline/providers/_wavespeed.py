"""WaveSpeedAI v3 adapter for Kling Image O3 (text-to-image, and edit when a job has images).

Wire: ``POST /api/v3/kwaivgi/kling-image-o3/text-to-image`` (or ``.../edit`` with ``images``),
``GET /api/v3/predictions/{id}/result``, ``POST /api/v3/predictions/delete {ids}``, and the
listing ``POST /api/v3/predictions {page, page_size, created_after...}`` (the last 7 days,
newest first, without the request's input). Every answer is an envelope ``{code, message,
data}``; ``data`` is the prediction (or the listing's page).

Prediction status -> :class:`TaskState`: ``created`` -> QUEUED; ``processing`` -> RUNNING;
``completed`` -> COMPLETED; ``failed``/``cancelled``/``timeout``/``deleted`` -> FAILED. A
status this module does not know is read as RUNNING (a new intermediate state must not break
runs; the job timeout still bounds it).

Retention: WaveSpeed deletes predictions and their outputs after 7 days. A ``deleted``
prediction is FAILED with ``error_code="expired"`` (:attr:`ErrorCode.EXPIRED`): the
provider said the outputs are gone. A **404 on poll** is *not* read as expired: it is the
answer to an id WaveSpeed never issued as well (another account's key, another base URL,
a typo), so it stays a final ``ProviderError`` (code ``404``) and the caller, who knows
when it submitted the task, decides (``spec.retention_s`` says how long WaveSpeed keeps
them: a 404 for a task older than that means the same as ``deleted``).

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
``failed``
``deleted`` status      no         code ``expired``; outputs gone (see above)
======  =====================  =========  ============================================

Cost is the published price table: ``usd_per_image[resolution]`` x images returned when
completed, else x ``n``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from pipeline.errors import ErrorCode, ProviderError
from pipeline.jobs import Job
from pipeline.providers._body import ErrorBody, Fields
from pipeline.providers._http import HttpAdapter, error_for_status
from pipeline.providers.base import ImageRef, ListedTask, TaskState, TaskStatus
from pipeline.providers.specs import WAVESPEED, Cost, ProviderSpec

TEXT_TO_IMAGE_PATH = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
EDIT_PATH = "/api/v3/kwaivgi/kling-image-o3/edit"
RESULT_PATH = "/api/v3/predictions/{id}/result"
DELETE_PATH = "/api/v3/predictions/delete"
LIST_PATH = "/api/v3/predictions"
MODEL_PREFIX = "kwaivgi/kling-image-o3/"
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 50  # 5,000 tasks: more than a week of any tier's lost replies
# Listings show times truncated (to the millisecond, perhaps the second) and may treat
# ``created_after`` as exclusive: ask for, and keep, a second more than ``since``.
_LIST_SLACK_S = 1.0
EXPIRED_MESSAGE = "WaveSpeed deleted the task and its outputs (it keeps them 7 days)"

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
    if status == "deleted":
        return TaskStatus(
            remote_id=remote_id,
            state=state,
            error_code=ErrorCode.EXPIRED,
            error_message=EXPIRED_MESSAGE,
        )
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


def parse_time(value: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 time (UTC when it names no zone); None if unreadable."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def iso_time(epoch: float) -> str:
    """``2026-01-01T12:00:00.000Z`` for epoch seconds (milliseconds rounded down)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def listed_task(item: Fields) -> ListedTask | None:
    """One listing item as a :class:`ListedTask`; None when it has no readable id. An
    item that is otherwise unreadable is kept with what could be read (one odd
    prediction must not hide the others)."""
    remote_id = item.opt_str("id")
    if remote_id is None:
        return None
    created_at = parse_time(item.opt_str("created_at"))
    model = item.opt_str("model")
    try:
        status = parse_prediction(item)
    except ProviderError:
        state = _STATES.get((item.opt_str("status") or "").lower(), TaskState.RUNNING)
        return ListedTask(remote_id, state, created_at=created_at, model=model)
    return ListedTask(
        remote_id, status.state, created_at=created_at, model=model, images=status.images
    )


def _format_of(url: str) -> str | None:
    suffix = urlsplit(url).path.rpartition(".")[2].lower()
    suffix = "jpeg" if suffix == "jpg" else suffix
    return suffix if suffix in ("png", "jpeg", "webp") else None


def listing_matches(task: ListedTask, job: Job) -> bool:
    """Whether a listed task could be ``job``'s: weak evidence, since the listing carries
    no input. False only when what it does carry contradicts the job: another model
    (text-to-image vs edit), or, once completed, another image count or format."""
    path, _ = request_for(job)
    wanted = MODEL_PREFIX + ("edit" if path == EDIT_PATH else "text-to-image")
    if task.model is not None and task.model != wanted:
        return False
    if task.input is not None and task.input.get("prompt") not in (None, job.prompt):
        return False
    if task.state is TaskState.COMPLETED and task.images:
        if len(task.images) != job.params.n:
            return False
        formats = {_format_of(image.url) for image in task.images} - {None}
        if formats and formats != {job.params.output_format}:
            return False
    return True


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

    async def recent(self, *, since: float, limit: int = 100) -> list[ListedTask]:
        """Kling Image O3 tasks created at or after ``since`` (epoch seconds), newest
        first, any status, at most ``limit`` (paging through the listing, at most
        ``MAX_LIST_PAGES`` pages). A task the listing dates less than a second before
        ``since`` is kept too: listings truncate their times. Only the last 7 days can be
        listed, and never with the request's input (see :func:`listing_matches`).
        Raises ``ProviderError`` subclasses like a poll."""
        found: dict[str, ListedTask] = {}
        limit = max(1, limit)
        cut = since - _LIST_SLACK_S
        after = iso_time(max(0.0, cut))
        for page in range(1, MAX_LIST_PAGES + 1):
            query = {"page": page, "page_size": LIST_PAGE_SIZE, "created_after": after}
            data = unwrap(await self._http.request("POST", LIST_PATH, json_body=query))
            items = data.objects("items") or []
            older = False
            for item in items:
                task = listed_task(item)
                if task is None or task.remote_id in found:
                    continue
                if task.created_at is not None and task.created_at < cut:
                    older = True  # newest first: the rest are older still
                    break
                if task.model is None or task.model.startswith(MODEL_PREFIX):
                    found[task.remote_id] = task
                if len(found) >= limit:
                    return list(found.values())
            total = data.opt_int("total")
            if older or not items or (total is not None and page * LIST_PAGE_SIZE >= total):
                break
        return list(found.values())

    def matches(self, task: ListedTask, job: Job) -> bool:
        """See :func:`listing_matches` (weak: combine it with ``created_at``)."""
        return listing_matches(task, job)

    def cost(self, job: Job, status: TaskStatus) -> Cost:
        """Price table x images returned (completed) or x ``n`` (otherwise)."""
        assert self.spec.usd_per_image is not None
        count = len(status.images) if status.state is TaskState.COMPLETED else job.params.n
        rate = self.spec.usd_per_image[job.params.resolution.lower()]
        return Cost(usd=round(rate * count, 6), credits=None, basis="price_table")
