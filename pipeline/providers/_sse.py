"""Server-sent events: the ``data:`` frames of a streamed answer, decoded as JSON.

Per the SSE format: an event is a run of lines ended by a blank line; ``data:`` lines
(one space after the colon dropped) are joined with newlines; comment lines (``:``) and
other fields (``event:``, ``id:``, ``retry:``) are ignored; an event the stream ends
in the middle of is dropped. A provider that answers plain JSON instead of a stream gives
one frame, its body.

Failures are mapped as for a submit (``creates_task``: the request made a task): the
connection breaking, or no byte for the idle timeout, is the client's
``network_error``; a frame that is not JSON is ``bad_response``. The caller knows
whether a frame has named the task yet and turns these into what they mean then.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp

from pipeline.providers._body import bad_response
from pipeline.providers._http import MAX_BODY, HttpClient

MAX_LINE_BYTES = 1024 * 1024


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    while True:
        line = await response.content.readline()
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise ValueError("line too long")
        yield line.decode("utf-8", errors="replace").rstrip("\r\n")


def _decode(provider: str, payload: str) -> object:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise bad_response(provider, "stream frame is not JSON", creates_task=True) from exc


async def json_frames(
    client: HttpClient, response: aiohttp.ClientResponse, *, provider: str
) -> AsyncGenerator[object, None]:
    """Each event's data, decoded (see the module docstring for what it raises)."""
    try:
        if response.content_type == "application/json":
            raw = await response.content.read(MAX_BODY)
            yield _decode(provider, raw.decode("utf-8", errors="replace"))
            return
        data: list[str] = []
        async for line in _lines(response):
            if not line:
                if data:
                    yield _decode(provider, "\n".join(data))
                data = []
                continue
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value.removeprefix(" "))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise client.network_error(exc, creates_task=True) from exc
    except ValueError as exc:  # aiohttp's "Chunk too big", or ours
        raise bad_response(provider, f"stream: {exc}", creates_task=True) from exc
