"""The WaveSpeedAI v3 API (``/api/v3/...``) for Kling Image O3.

Submit answers a ``created`` prediction; polls read the task's timeline. Extra tasks
beyond ``max_concurrent`` wait in the queue (the documented behaviour) rather than being
refused; beyond ``images_per_minute`` a submit gets 429. ``enable_sync_mode`` holds the
submit until the task ends or ``sync_timeout_s`` passes (then: status ``processing``,
code 5004), like the real API. After the profile's ``retention_s`` a poll answers status
``deleted`` (no outputs) until ``purge_s`` more have passed, then 404. The listing
(``POST /api/v3/predictions``) is in :mod:`pipeline.emulator._wavespeed_list`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.emulator._faults import draw_fate
from pipeline.emulator._gate import Kind, admit, over_image_limit
from pipeline.emulator._state import STATE_KEY, EmulatorState
from pipeline.emulator._tasks import Phase, Task, TaskSpec
from pipeline.emulator._wavespeed_list import list_predictions
from pipeline.emulator._wavespeed_wire import MODEL_ROOT, PROVIDER, envelope, prediction
from pipeline.emulator._wire import InvalidInput, is_http_url, json_reply, read_object
from pipeline.providers.specs import ASPECT_RATIOS, MAX_IMAGE_URLS, MAX_PROMPT_CHARS, WAVESPEED

RESOLUTIONS = ("1k", "2k", "4k")
FORMATS = ("png", "jpeg", "webp")
MAX_IMAGES = 9
PRICES = WAVESPEED.usd_per_image or {"1k": 0.028, "2k": 0.028, "4k": 0.056}


def parse_submit(body: dict[str, Any], *, edit: bool) -> TaskSpec:
    """Validate a submit body (unknown fields ignored). Raises ``InvalidInput``."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"prompt must be at most {MAX_PROMPT_CHARS} characters")
    ratios = (*ASPECT_RATIOS, "auto") if edit else ASPECT_RATIOS
    aspect = body.get("aspect_ratio", "16:9")
    if aspect not in ratios:
        raise InvalidInput(f"aspect_ratio must be one of {', '.join(ratios)}")
    resolution = body.get("resolution", "1k")
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    n = body.get("num_images", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise InvalidInput(f"num_images must be an integer from 1 to {MAX_IMAGES}")
    fmt = body.get("output_format", "png")
    if fmt not in FORMATS:
        raise InvalidInput(f"output_format must be one of {', '.join(FORMATS)}")
    sync = body.get("enable_sync_mode", False)
    if not isinstance(sync, bool):
        raise InvalidInput("enable_sync_mode must be a boolean")
    wire: dict[str, Any] = {
        "prompt": prompt,
        "aspect_ratio": aspect,
        "resolution": resolution,
        "num_images": n,
        "output_format": fmt,
    }
    images: tuple[str, ...] = ()
    if edit:
        raw = body.get("images")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_IMAGE_URLS:
            raise InvalidInput(f"images is required: 1 to {MAX_IMAGE_URLS} image URLs")
        if not all(is_http_url(u) for u in raw):
            raise InvalidInput("images must be http(s) URLs")
        images = tuple(raw)
        wire["images"] = list(images)
    return TaskSpec(prompt, aspect, resolution, fmt, n, images, wire)


def _origin(request: web.Request) -> str:
    return str(request.url.origin())


async def _submit(request: web.Request, *, edit: bool) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.SUBMIT)
    if adm.reply is not None:
        return adm.reply
    counters = state.counters[PROVIDER]
    try:
        body = await read_object(request)
        spec = parse_submit(body, edit=edit)
    except InvalidInput as exc:
        return state.error(PROVIDER, 400, exc.message)
    profile = state.config.faults_for(PROVIDER)
    if profile.credits_after is not None and counters.submits >= profile.credits_after:
        return state.error(PROVIDER, 402, "Insufficient balance")
    refused = over_image_limit(state, PROVIDER, spec.n)
    if refused is not None:
        return refused
    model = f"{MODEL_ROOT}/{'edit' if edit else 'text-to-image'}"
    task = state.store.create(
        state.store.new_id(),
        provider=PROVIDER,
        model=model,
        spec=spec,
        usage={},
        fate=draw_fate(state.config, PROVIDER, state.rng, spec.prompt),
        queued_limit=profile.max_concurrent,
        retention_s=profile.retention_s,
        purge_s=profile.purge_s,
    )
    charge = PRICES[spec.resolution] * spec.n
    counters.record_submit(task.id, {"model": model, **spec.wire_input}, charge)
    adm = adm.created(state, PROVIDER)
    if adm.reset_after:
        return adm.finish(state, request, PROVIDER, json_reply({}))
    if body.get("enable_sync_mode") is True:
        data = await _wait_sync(state, task, _origin(request))
    else:
        data = prediction(state, task, Phase.QUEUED, _origin(request))
    return adm.finish(state, request, PROVIDER, json_reply(envelope(data)))


async def _wait_sync(state: EmulatorState, task: Task, origin: str) -> dict[str, Any]:
    now = state.clock()
    until = min(task.ends, now + state.config.sync_timeout_s)
    await state.sleep(max(0.0, until - now))
    phase = task.phase(state.clock())
    state.counters[PROVIDER].record_shown(task, state.clock(), phase.terminal)
    data = prediction(state, task, phase, origin)
    if not phase.terminal:
        data["status"] = "processing"
        data["code"] = 5004
        data["error"] = "Sync mode timed out; query the result later"
    return data


async def submit_text(request: web.Request) -> web.StreamResponse:
    """``POST /api/v3/kwaivgi/kling-image-o3/text-to-image``."""
    return await _submit(request, edit=False)


async def submit_edit(request: web.Request) -> web.StreamResponse:
    """``POST /api/v3/kwaivgi/kling-image-o3/edit``."""
    return await _submit(request, edit=True)


async def get_result(request: web.Request) -> web.StreamResponse:
    """``GET /api/v3/predictions/{id}/result`` and ``GET /api/v3/predictions/{id}``."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.POLL)
    if adm.reply is not None:
        return adm.reply
    task = state.store.get(request.match_info["id"], PROVIDER)
    now = state.clock()
    if task is None or now >= task.purged:
        return state.error(PROVIDER, 404, "Prediction not found")
    phase = task.phase(now)
    state.counters[PROVIDER].record_shown(task, state.clock(), phase.terminal)
    data = prediction(state, task, phase, _origin(request))
    return adm.finish(state, request, PROVIDER, json_reply(envelope(data)))


async def delete(request: web.Request) -> web.StreamResponse:
    """``POST /api/v3/predictions/delete`` with ``{ids: [...]}``."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.OTHER)
    if adm.reply is not None:
        return adm.reply
    try:
        ids = (await read_object(request)).get("ids")
    except InvalidInput as exc:
        return state.error(PROVIDER, 400, exc.message)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return state.error(PROVIDER, 400, "ids must be a list of prediction ids")
    deleted = [i for i in ids if state.store.delete(i, PROVIDER)]
    return adm.finish(state, request, PROVIDER, json_reply(envelope({"ids": deleted})))


async def balance(request: web.Request) -> web.StreamResponse:
    """``GET /api/v3/balance``: the starting balance less what created tasks cost."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.OTHER)
    if adm.reply is not None:
        return adm.reply
    left = state.config.wavespeed_balance_usd - state.counters[PROVIDER].charged
    return adm.finish(state, request, PROVIDER, json_reply(envelope({"balance": round(left, 6)})))


async def not_found(request: web.Request) -> web.StreamResponse:
    """Any other ``/api/v3`` path: 404 in WaveSpeed's shape."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.OTHER)
    if adm.reply is not None:
        return adm.reply
    return state.error(PROVIDER, 404, "Model or endpoint not found")


def add_routes(app: web.Application) -> None:
    """Register the WaveSpeed routes (specific ones first, the 404 catch-all last)."""
    app.router.add_post(f"/api/v3/{MODEL_ROOT}/text-to-image", submit_text)
    app.router.add_post(f"/api/v3/{MODEL_ROOT}/edit", submit_edit)
    app.router.add_post("/api/v3/predictions/delete", delete)
    app.router.add_post("/api/v3/predictions", list_predictions)
    app.router.add_get("/api/v3/predictions/{id}/result", get_result)
    app.router.add_get("/api/v3/predictions/{id}", get_result)
    app.router.add_get("/api/v3/balance", balance)
    app.router.add_route("*", "/api/v3/{tail:.*}", not_found)
