"""The aiohttp application: both provider APIs, image files, and the control endpoints.

Control endpoints (not part of either provider's API, no auth):

- ``GET /_emulator/health`` -> ``{"ok": true}``
- ``GET /_emulator/stats`` -> :class:`~pipeline.emulator._stats.EmulatorStats` as JSON
- ``GET /_emulator/tasks[?provider=NAME]`` -> every task: id, provider, status, input,
  usage, created/completed times
- ``GET /_emulator/files/{task id}/{k}.{ext}`` -> image ``k`` (1-based) of a completed task:
  404 unless it exists and completed, 410 once retention deleted the task (404 when
  purged), 403 when the provider signs URLs (``url_ttl_s``) and the signature is missing,
  wrong or expired (checked after retention: a deleted task's URLs say 410 whatever their
  age)
"""

from __future__ import annotations

from aiohttp import web

from pipeline.clock import Clock
from pipeline.emulator import _skills_sse as skills_sse
from pipeline.emulator import _skills_video as skills_video
from pipeline.emulator import _wavespeed as wavespeed
from pipeline.emulator._config import PROVIDERS, EmulatorConfig
from pipeline.emulator._faults import chance
from pipeline.emulator._images import CONTENT_TYPES, ImageKey, image_size
from pipeline.emulator._state import STATE_KEY, EmulatorState
from pipeline.emulator._tasks import Phase
from pipeline.emulator._urls import refusal
from pipeline.emulator._wire import json_reply


def create_app(config: EmulatorConfig, *, clock: Clock | None = None) -> web.Application:
    """A fresh emulator application for ``config``.

    ``clock`` (default: the system's) drives task timelines, rate limits and waits; tests
    pass a virtual one to step through a task's life without sleeping.
    """
    app = web.Application()
    app[STATE_KEY] = EmulatorState(config, clock=clock)
    wavespeed.add_routes(app)
    skills_sse.add_routes(app)
    skills_video.add_routes(app)
    app.router.add_get("/_emulator/health", health)
    app.router.add_get("/_emulator/stats", stats)
    app.router.add_get("/_emulator/tasks", tasks)
    app.router.add_get("/_emulator/files/{task_id}/{name}", download)
    return app


async def health(request: web.Request) -> web.Response:
    """Liveness for scripts that start ``pipeline emulate``."""
    return json_reply({"ok": True})


async def stats(request: web.Request) -> web.Response:
    """Every provider's counters."""
    return json_reply(request.app[STATE_KEY].stats().as_dict())


async def tasks(request: web.Request) -> web.Response:
    """All tasks (optionally of one provider), in submit order."""
    state = request.app[STATE_KEY]
    provider = request.query.get("provider")
    if provider is not None and provider not in PROVIDERS:
        return json_reply({"message": f"unknown provider {provider!r}"}, 400)
    return json_reply([state.task_view(t) for t in state.store.tasks(provider)])


async def download(request: web.Request) -> web.StreamResponse:
    """One generated image, rendered on first request (see the module docstring)."""
    state = request.app[STATE_KEY]
    task = state.store.get(request.match_info["task_id"])
    stem, _, ext = request.match_info["name"].partition(".")
    if (
        task is None
        or not stem.isdigit()
        or not 1 <= int(stem) <= task.spec.n
        or ext != task.spec.output_format
    ):
        return json_reply({"message": "file not found"}, 404)
    now = state.clock()
    phase = task.phase(now)
    if phase is Phase.DELETED:
        if now >= task.purged:
            return json_reply({"message": "file not found"}, 404)
        return json_reply({"message": "file deleted: the task's retention has passed"}, 410)
    profile = state.config.faults_for(task.provider)
    if profile.url_ttl_s is not None:
        why = refusal(state.url_secret, request.path, request.query, int(state.wall() * 1000))
        if why is not None:
            return json_reply({"message": why}, 403)
    if phase is not Phase.COMPLETED:
        return json_reply({"message": "file not found"}, 404)
    k = int(stem)
    width, height = image_size(
        task.spec.aspect_ratio, task.spec.resolution, state.config.image_scale
    )
    data = await state.images.get(ImageKey(task.id, k, width, height, ext))
    if profile.download_delay_s > 0:
        await state.sleep(profile.download_delay_s)
    state.counters[task.provider].downloads += 1
    headers = {"Content-Type": CONTENT_TYPES[ext], "Cache-Control": "public, max-age=86400"}
    first = (task.id, k) not in state.downloaded
    state.downloaded.add((task.id, k))
    if (first and profile.truncate_first_download) or chance(state.rng, profile.truncate_download):
        return await _truncated(request, data, headers)
    return web.Response(body=data, headers=headers)


async def _truncated(
    request: web.Request, data: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    # Promise the full length, send half, then close: the client sees a short body.
    resp = web.StreamResponse(headers=headers)
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.close()
    return resp
