"""skills.video's streaming submit: ``POST /api/v1/generation/sse/kling-ai/o3-image``.

Same body and checks as the plain submit (errors before the stream are ordinary JSON
errors). Then ``200 text/event-stream``: one ``data: {generation}`` frame per status
change, no event names, the first being the queued generation (it carries the id), the
last a terminal one; then the stream ends. A stuck task holds its stream open until the
server shuts down. Faults: ``lost_reply`` / ``reset`` drop the connection before the
first frame, ``malformed_json`` answers a broken JSON body instead of a stream, and
``sse_drop`` closes the stream right after the first frame.
"""

from __future__ import annotations

import json
import math

import anyio
from aiohttp import web

from pipeline.emulator._faults import chance
from pipeline.emulator._skills_video import MODEL, PROVIDER, create, generation
from pipeline.emulator._state import STATE_KEY
from pipeline.emulator._tasks import Phase
from pipeline.emulator._wire import json_reply

SSE_PATH = f"/api/v1/generation/sse/{MODEL}"


async def submit_sse(request: web.Request) -> web.StreamResponse:
    """The streaming submit (see the module docstring)."""
    adm, task, early = await create(request)
    if task is None:
        assert early is not None
        return early
    state = request.app[STATE_KEY]
    if adm.reset_after or adm.malformed:
        return adm.finish(state, request, PROVIDER, json_reply({}))
    drop = chance(state.rng, state.config.faults_for(PROVIDER).sse_drop)
    origin = str(request.url.origin())
    stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    stream.headers["Cache-Control"] = "no-cache"
    await stream.prepare(request)

    async def send(phase: Phase) -> bool:
        frame = json.dumps(generation(state, task, phase, origin), separators=(",", ":"))
        try:
            await stream.write(f"data: {frame}\n\n".encode())
        except ConnectionError:
            return False  # the client went away
        return True

    # The first frame is the submit reply (queued); then one frame per change.
    shown = Phase.QUEUED
    if not await send(shown):
        return stream
    if drop:
        # Close without the chunked body's end: the client sees the stream cut short.
        state.counters[PROVIDER].resets += 1
        if request.transport is not None:
            request.transport.close()
        return stream
    while not shown.terminal:
        now = state.clock()
        phase = task.phase(now)
        if phase is Phase.DELETED:
            break  # retention passed mid-stream: end it; a poll now answers 404
        if phase is not shown:
            if not await send(phase):
                return stream
            shown = phase
            continue
        wake = task.next_change(now)
        if math.isinf(wake):
            await anyio.sleep_forever()  # a stuck task: hold the stream until shutdown
        else:
            await state.sleep(max(0.0, wake - now))
    state.counters[PROVIDER].record_shown(task, state.clock(), terminal=True)
    await stream.write_eof()
    return stream


def add_routes(app: web.Application) -> None:
    """Register the SSE route (before skills.video's catch-all routes)."""
    app.router.add_post(SSE_PATH, submit_sse)
