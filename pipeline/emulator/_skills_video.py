"""The skills.video v1 API (``/api/v1/...``) for Kling O3 Image.

Submit answers ``IN_QUEUE`` with the normalized input and the credits charged (200, or
202 under ``accepted_202``); polls read the task's timeline. Over ``max_concurrent``
unfinished tasks or ``images_per_minute`` a submit is refused with 429 (limits are
undocumented; refusing is the harsher guess). Status spelling follows
``skills_status_style``: ``upper`` (``IN_QUEUE``...) or ``lower`` (``starting``...),
the two spellings the docs have used. After ``retention_s`` a generation answers 404 (the
API documents no deleted status). The SSE variant is in
:mod:`pipeline.emulator._skills_sse`.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from pipeline.emulator._faults import draw_fate, rejects_content
from pipeline.emulator._gate import Admission, Kind, admit, over_image_limit
from pipeline.emulator._images import CONTENT_TYPES, image_size
from pipeline.emulator._state import STATE_KEY, EmulatorState
from pipeline.emulator._tasks import Outcome, Phase, Task, TaskSpec
from pipeline.emulator._wire import (
    InvalidInput,
    is_http_url,
    json_reply,
    read_object,
    retry_after_header,
)
from pipeline.providers.specs import ASPECT_RATIOS, MAX_IMAGE_URLS, MAX_PROMPT_CHARS

PROVIDER = "skills_video"
MODEL = "kling-ai/o3-image"
RESOLUTIONS = ("1K", "2K")
FORMATS = ("jpeg", "png", "webp")
MAX_N = 4
STATUS_STYLES: dict[str, dict[Phase, str]] = {
    "upper": {
        Phase.QUEUED: "IN_QUEUE",
        Phase.RUNNING: "IN_PROGRESS",
        Phase.COMPLETED: "COMPLETED",
        Phase.FAILED: "FAILED",
    },
    "lower": {
        Phase.QUEUED: "starting",
        Phase.RUNNING: "processing",
        Phase.COMPLETED: "succeeded",
        Phase.FAILED: "failed",
    },
}
CANCELED_STYLES = {"upper": "CANCELED", "lower": "canceled"}
# "@Image3" or a bare "@Image", not followed by more letters ("@Images" is plain text).
_REFERENCE = re.compile(r"@Image(\d*)(?![A-Za-z0-9])")


def parse_submit(body: dict[str, Any]) -> TaskSpec:
    """Validate a submit body, defaults filled in. Raises ``InvalidInput``."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"prompt must be at most {MAX_PROMPT_CHARS} characters")
    urls = body.get("image_urls") or []
    if not isinstance(urls, list) or len(urls) > MAX_IMAGE_URLS:
        raise InvalidInput(f"image_urls must be a list of at most {MAX_IMAGE_URLS} URLs")
    if not all(is_http_url(u) for u in urls):
        raise InvalidInput("image_urls must be http(s) URLs")
    for ref in _REFERENCE.findall(prompt):
        if ref == "" and len(urls) != 1:
            raise InvalidInput("prompt: @Image may be used only with exactly one image")
        if ref and not 1 <= int(ref) <= len(urls):
            raise InvalidInput(f"prompt: @Image{ref} is not in image_urls ({len(urls)} given)")
    resolution = body.get("resolution", "1K")
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    aspect = body.get("aspect_ratio", "16:9")
    if aspect not in ASPECT_RATIOS:
        raise InvalidInput(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
    fmt = body.get("output_format", "png")
    if fmt not in FORMATS:
        raise InvalidInput(f"output_format must be one of {', '.join(FORMATS)}")
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise InvalidInput(f"n must be an integer from 1 to {MAX_N}")
    wire: dict[str, Any] = {"prompt": prompt}
    if urls:
        wire["image_urls"] = list(urls)
    wire |= {"resolution": resolution, "aspect_ratio": aspect, "output_format": fmt, "n": n}
    return TaskSpec(prompt, aspect, resolution.lower(), fmt, n, tuple(urls), wire)


def generation(state: EmulatorState, task: Task, phase: Phase, origin: str) -> dict[str, Any]:
    """A generation as ``GET /api/v1/generation/{id}`` shows it in ``phase``."""
    spec = task.spec
    style = state.config.skills_status_style
    status = STATUS_STYLES[style][phase]
    if phase is Phase.FAILED and task.outcome is Outcome.CANCELLED:
        status = CANCELED_STYLES[style]
    body: dict[str, Any] = {
        "id": task.id,
        "status": status,
        "input": dict(spec.wire_input),
        "data": None,
        "usage": dict(task.usage),
    }
    if phase is Phase.COMPLETED:
        width, height = image_size(spec.aspect_ratio, spec.resolution, state.config.image_scale)
        images = [
            {
                "url": state.image_url(task, k, origin),
                "file_name": f"{task.id}-{k}.{spec.output_format}",
                "content_type": CONTENT_TYPES[spec.output_format],
                "width": width,
                "height": height,
            }
            for k in range(1, spec.n + 1)
        ]
        body["data"] = {
            "type": "image",
            "n": spec.n,
            "actual_prompt": spec.prompt,
            "images": images,
            "image": images[0],
        }
    elif phase is Phase.FAILED:
        if task.error_code is not None:
            body["code"] = task.error_code
        body["message"] = task.error_message
    return body


async def create(request: web.Request) -> tuple[Admission, Task | None, web.StreamResponse | None]:
    """Admit, validate and create a task; the third item is an early error reply."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.SUBMIT)
    if adm.reply is not None:
        return adm, None, adm.reply
    counters = state.counters[PROVIDER]
    try:
        spec = parse_submit(await read_object(request))
    except InvalidInput as exc:
        return adm, None, state.error(PROVIDER, 400, exc.message)
    profile = state.config.faults_for(PROVIDER)
    if profile.credits_after is not None and counters.submits >= profile.credits_after:
        return adm, None, state.error(PROVIDER, 402)
    if rejects_content(profile, state.rng, spec.prompt):
        return adm, None, state.error(PROVIDER, 422)
    lane = state.store.lane(PROVIDER)
    limit = profile.max_concurrent
    if limit is not None and lane.in_flight(state.clock()) >= limit:
        headers = retry_after_header(profile.retry_after)
        message = f"Too many generations in progress (limit {limit})"
        return adm, None, state.error(PROVIDER, 429, message, headers=headers)
    refused = over_image_limit(state, PROVIDER, spec.n)
    if refused is not None:
        return adm, None, refused
    credits = float(state.config.credits_per_image[spec.resolution.upper()]) * spec.n
    # Whole numbers go out as JSON integers, as in the docs' example ("total": 20).
    shown: float | int = int(credits) if credits.is_integer() else credits
    usage = {"total": shown, "subscription": shown, "permanent": 0}
    task = state.store.create(
        state.store.new_id("gen_"),
        provider=PROVIDER,
        model=MODEL,
        spec=spec,
        usage=usage,
        fate=draw_fate(state.config, PROVIDER, state.rng, spec.prompt),
        retention_s=profile.retention_s,
        purge_s=profile.purge_s,
    )
    counters.record_submit(task.id, dict(spec.wire_input), credits)
    return adm.created(state, PROVIDER), task, None


async def submit(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/generation/kling-ai/o3-image``."""
    adm, task, early = await create(request)
    if task is None:
        assert early is not None
        return early
    state = request.app[STATE_KEY]
    body = generation(state, task, Phase.QUEUED, "")
    del body["data"]
    return adm.finish(state, request, PROVIDER, json_reply(body))


async def get_generation(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/generation/{id}``."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.POLL)
    if adm.reply is not None:
        return adm.reply
    task = state.store.get(request.match_info["id"], PROVIDER)
    if task is None or (phase := task.phase(state.clock())) is Phase.DELETED:
        return state.error(PROVIDER, 404, "Generation not found")
    state.counters[PROVIDER].record_shown(task, state.clock(), phase.terminal)
    body = generation(state, task, phase, str(request.url.origin()))
    return adm.finish(state, request, PROVIDER, json_reply(body))


async def running(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/generations/running?limit=1..100``: unfinished tasks, newest first."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.POLL)
    if adm.reply is not None:
        return adm.reply
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        return state.error(PROVIDER, 400, "limit must be 1 to 100")
    now = state.clock()
    style = STATUS_STYLES[state.config.skills_status_style]
    items: list[dict[str, Any]] = []
    for task in reversed(list(state.store.tasks(PROVIDER))):
        phase = task.phase(now)
        if not phase.terminal:
            status = style[phase]
            items.append(
                {
                    "id": task.id,
                    "status": status,
                    "usage": task.usage,
                    "input": task.spec.wire_input,
                }
            )
            if len(items) == int(raw):
                break
    return adm.finish(state, request, PROVIDER, json_reply(items))


async def unsupported_model(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/generation/<other model>``: 400 unsupported model."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.OTHER)
    if adm.reply is not None:
        return adm.reply
    message = f"Unsupported model: {request.match_info['model']}"
    return state.error(PROVIDER, 400, message, code="IMAGE_GENERATION_UNSUPPORTED_MODEL")


async def not_found(request: web.Request) -> web.StreamResponse:
    """Any other ``/api/v1`` path: 404 in skills.video's shape."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.OTHER)
    if adm.reply is not None:
        return adm.reply
    return state.error(PROVIDER, 404)


def add_routes(app: web.Application) -> None:
    """Register the skills.video routes (specific ones first, catch-alls last; the SSE
    route, :func:`pipeline.emulator._skills_sse.add_routes`, goes before these)."""
    app.router.add_post(f"/api/v1/generation/{MODEL}", submit)
    app.router.add_get("/api/v1/generation/{id}", get_generation)
    app.router.add_get("/api/v1/generations/running", running)
    app.router.add_post("/api/v1/generation/{model:.+}", unsupported_model)
    app.router.add_route("*", "/api/v1/{tail:.*}", not_found)
