"""skills.video v1 adapter for Kling O3 Image.

Wire: ``POST /api/v1/generation/kling-ai/o3-image`` (any 2xx: 200, or 202 Accepted),
``GET /api/v1/generation/{id}``, ``GET /api/v1/generations/running?limit=``, and the
streaming submit ``POST /api/v1/generation/sse/kling-ai/o3-image`` (``text/event-stream``,
one ``data: {generation}`` frame per status change). A generation is ``{id, status,
input, data, usage, code, message}``; ``data`` is null until completed, then holds
``images[]`` (and ``image``, the first one). There is no cancel endpoint, and no listing
of finished generations (``recent`` answers None).

A poll that answers 404 is a ``ProviderError`` (code ``NOT_FOUND``), not an expired
task: the API documents no retention and no deleted status, and a 404 cannot tell a
task it forgot from an id it never issued (another account, another base URL).

Status -> :class:`TaskState`, both documented spellings, case-insensitive: ``IN_QUEUE`` /
``starting`` -> QUEUED; ``IN_PROGRESS`` / ``processing`` -> RUNNING; ``COMPLETED`` /
``succeeded`` -> COMPLETED; ``FAILED`` / ``CANCELED`` / ``CANCELLED`` (any case) -> FAILED.
An unknown status reads as RUNNING (the job timeout still bounds it).

A failed generation's ``error_code`` is its ``code`` (else the status). Retryable
(``TaskStatus.retryable``), by the code's suffix:

=====================================================  =========  =========================
code                                                   retryable  why
=====================================================  =========  =========================
``*_CONTENT_REJECTED``, ``*_INVALID_INPUT``,           no         the same request fails
``*_UNSUPPORTED_MODEL``, ``*_INSUFFICIENT_CREDITS``               again
``*FAILED`` (``IMAGE_GENERATION_FAILED``,              yes        transient; the scheduler
``*_UPSTREAM_FAILED``), ``*TIMEOUT``, ``*UNAVAILABLE``,           caps attempts
``*RATE_LIMITED``, ``*INTERNAL_ERROR``
cancelled, no code, anything else                      no         deliberate or unknown
=====================================================  =========  =========================

Cost is what the provider reported: ``usage.total`` credits (x ``usd_per_credit`` when
known), basis ``reported``; without usage, the spec's estimate.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from pipeline.errors import OutcomeUnknown, ProviderError
from pipeline.jobs import Job
from pipeline.providers._body import Fields, bad_response
from pipeline.providers._http import HttpAdapter
from pipeline.providers._sse import json_frames
from pipeline.providers.base import ImageRef, ListedTask, StreamDropped, TaskState, TaskStatus
from pipeline.providers.specs import SKILLS_VIDEO, Cost, ProviderSpec

SUBMIT_PATH = "/api/v1/generation/kling-ai/o3-image"
SSE_PATH = "/api/v1/generation/sse/kling-ai/o3-image"
POLL_PATH = "/api/v1/generation/{id}"
RUNNING_PATH = "/api/v1/generations/running"

_STATES: dict[str, TaskState] = {
    **dict.fromkeys(("in_queue", "starting"), TaskState.QUEUED),
    **dict.fromkeys(("in_progress", "processing"), TaskState.RUNNING),
    **dict.fromkeys(("completed", "succeeded"), TaskState.COMPLETED),
    **dict.fromkeys(("failed", "canceled", "cancelled"), TaskState.FAILED),
}
FINAL_SUFFIXES = ("CONTENT_REJECTED", "INVALID_INPUT", "UNSUPPORTED_MODEL", "INSUFFICIENT_CREDITS")
RETRYABLE_SUFFIXES = ("FAILED", "TIMEOUT", "UNAVAILABLE", "RATE_LIMITED", "INTERNAL_ERROR")


def request_for(job: Job) -> dict[str, Any]:
    """The JSON body that submits ``job``. Pure; raises nothing."""
    p = job.params
    body: dict[str, Any] = {
        "prompt": job.prompt,
        "resolution": p.resolution.upper(),
        "aspect_ratio": p.aspect_ratio,
        "output_format": p.output_format,
        "n": p.n,
    }
    if p.image_urls:
        body["image_urls"] = list(p.image_urls)
    return body


def failure_retryable(code: str | None) -> bool:
    """Whether a failed generation with this ``code`` may succeed when run again."""
    if not code:
        return False
    upper = code.upper()
    if upper.endswith(FINAL_SUFFIXES):
        return False
    return upper.endswith(RETRYABLE_SUFFIXES)


def _image(item: Fields) -> ImageRef:
    return ImageRef(
        url=item.req_str("url"),
        width=item.opt_int("width"),
        height=item.opt_int("height"),
        content_type=item.opt_str("content_type"),
    )


def _state(gen: Fields) -> tuple[str, TaskState]:
    status = gen.req_str("status")
    return status, _STATES.get(status.lower(), TaskState.RUNNING)


def _usage(gen: Fields) -> dict[str, Any]:
    usage = gen.opt_obj("usage")
    return dict(usage.raw) if usage is not None else {}


def parse_generation(gen: Fields) -> TaskStatus:
    """A generation object as a :class:`TaskStatus`.

    Raises ``ProviderError(code="bad_response")`` when ``id``/``status`` is missing or
    ill-typed, or a completed generation has no readable images.
    """
    remote_id = gen.req_str("id")
    status, state = _state(gen)
    usage = _usage(gen)
    if state is TaskState.COMPLETED:
        data = gen.opt_obj("data")
        if data is None:
            raise gen.error("response.data is missing on a completed generation")
        items = data.objects("images")
        if items is None:
            single = data.opt_obj("image")
            items = [single] if single is not None else None
        if items is None:
            raise gen.error("response.data has neither images nor image")
        images = tuple(_image(item) for item in items)
        return TaskStatus(remote_id=remote_id, state=state, images=images, usage=usage)
    if state is TaskState.FAILED:
        code = gen.opt_str("code")
        return TaskStatus(
            remote_id=remote_id,
            state=state,
            usage=usage,
            error_code=code or status,
            error_message=gen.opt_str("message") or gen.opt_str("error"),
            retryable=failure_retryable(code),
        )
    return TaskStatus(remote_id=remote_id, state=state, usage=usage)


def echo_matches(echoed: dict[str, Any], job: Job) -> bool:
    """Whether a generation whose normalised ``input`` is ``echoed`` could be ``job``'s
    submit: same prompt, and no field the provider echoed contradicts the job.
    (``resolution`` may come back normalised, e.g. ``1024x1024``, so only a ``1K``/``2K``
    spelling is compared.)"""
    if echoed.get("prompt") != job.prompt:
        return False
    sent = request_for(job)
    for key in ("aspect_ratio", "output_format", "n", "image_urls"):
        value = echoed.get(key)
        if value is not None and value != sent.get(key):
            return False
    res = echoed.get("resolution")
    res = res.upper() if isinstance(res, str) else None
    return res not in ("1K", "2K") or res == sent["resolution"]


def _running_items(answer: object) -> list[Fields]:
    items = answer
    if isinstance(answer, dict):
        # Tolerate a wrapped list ({data: [...]}) as well as the documented bare list.
        wrapped = (answer.get(k) for k in ("data", "items", "generations"))
        items = next((v for v in wrapped if isinstance(v, list)), None)
    if not isinstance(items, list):
        raise bad_response(
            SKILLS_VIDEO.name, "running list: expected a list of generations", creates_task=False
        )
    root = Fields({}, provider=SKILLS_VIDEO.name)
    return [root.child(item, f"running[{i}]") for i, item in enumerate(items)]


class SkillsVideoAdapter(HttpAdapter):
    """Submit, poll, list and cost Kling O3 Image generations on skills.video.

    Raises only ``ProviderError`` subclasses (see :mod:`pipeline.providers._http`).
    """

    spec: ProviderSpec = SKILLS_VIDEO
    # A stream silent this long is taken as dropped (status frames come only on changes,
    # and a generation may run for minutes; the poll that follows costs little).
    stream_idle_s: float = 120.0

    def __repr__(self) -> str:
        return f"SkillsVideoAdapter({self._http!r}, usd_per_credit={self.usd_per_credit})"

    async def submit(self, job: Job) -> TaskStatus:
        """Create the generation. Retryable errors only when none can exist; a lost reply
        or an unreadable 200 raises ``OutcomeUnknown`` (reconcile with :meth:`running`)."""
        answer = await self._http.request(
            "POST", SUBMIT_PATH, json_body=request_for(job), creates_task=True
        )
        return parse_generation(Fields(answer, provider=self.spec.name, creates_task=True))

    async def poll(self, remote_id: str) -> TaskStatus:
        """The generation's current status. Network and 5xx errors are retryable."""
        answer = await self._http.request("GET", POLL_PATH.format(id=quote(remote_id, safe="")))
        return parse_generation(Fields(answer, provider=self.spec.name))

    async def stream(self, job: Job) -> AsyncGenerator[TaskStatus, None]:
        """Submit over SSE and yield the generation's status at each frame: first the
        queued one (its ``remote_id`` is the task to poll if anything goes wrong), last
        a terminal one; then the iterator ends.

        Errors before the first frame are those of :meth:`submit` (an error answer
        mapped by status; a lost reply or an unreadable first frame ``OutcomeUnknown``).
        After it, a broken or silent (``stream_idle_s``) stream, an unreadable frame or
        an end before a terminal status raise :class:`StreamDropped` with the
        ``remote_id``: poll it, never resubmit. Use inside ``contextlib.aclosing``.
        """
        remote_id: str | None = None
        body = request_for(job)
        async with self._http.open_stream(
            SSE_PATH, json_body=body, idle_s=self.stream_idle_s
        ) as response:
            frames = json_frames(self._http, response, provider=self.spec.name)
            async with aclosing(frames):
                while True:
                    try:
                        frame = await anext(frames)
                        status = parse_generation(
                            Fields(frame, provider=self.spec.name, creates_task=remote_id is None)
                        )
                    except StopAsyncIteration:
                        break
                    except ProviderError as exc:
                        if remote_id is None:
                            raise
                        raise self._dropped(remote_id, exc.message) from exc
                    remote_id = remote_id or status.remote_id
                    yield status
                    if status.state.terminal:
                        return
        if remote_id is None:
            raise OutcomeUnknown(
                "the stream ended before naming the task; a task may exist",
                provider=self.spec.name,
            )
        raise self._dropped(remote_id, "the stream ended before a terminal status")

    def _dropped(self, remote_id: str, why: str) -> StreamDropped:
        return StreamDropped(
            f"stream of {remote_id} lost ({why}); poll it",
            remote_id=remote_id,
            provider=self.spec.name,
        )

    async def running(self, limit: int = 100) -> list[ListedTask]:
        """Generations still queued or running (``limit`` clamped to 1..100)."""
        limit = max(1, min(100, limit))
        answer = await self._http.request("GET", RUNNING_PATH, params={"limit": str(limit)})
        tasks = []
        for item in _running_items(answer):
            _, state = _state(item)
            given = item.opt_obj("input")
            tasks.append(
                ListedTask(
                    remote_id=item.req_str("id"),
                    state=state,
                    input=dict(given.raw) if given is not None else {},
                    usage=_usage(item),
                )
            )
        return tasks

    def matches(self, task: ListedTask, job: Job) -> bool:
        """See ``echo_matches`` (a task listed without its input never matches)."""
        return task.input is not None and echo_matches(task.input, job)

    # skills.video documents no cancel endpoint: the protocol's default (False) holds.

    def cost(self, job: Job, status: TaskStatus) -> Cost:
        """Reported ``usage.total`` credits (and USD when ``usd_per_credit`` is known);
        the spec's estimate when the provider reported no usable total."""
        total = status.usage.get("total")
        if isinstance(total, int | float) and not isinstance(total, bool) and total >= 0:
            rate = self.usd_per_credit
            usd = round(total * rate, 6) if rate is not None else None
            return Cost(usd=usd, credits=float(total), basis="reported")
        return self.spec.estimate(job.params, self.usd_per_credit)
