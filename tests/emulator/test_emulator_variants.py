"""The emulator's variants of real provider behaviour: lost replies, 202, error shapes,
403 permission, cancelled/timeout statuses, images per minute, dropped SSE streams."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, FaultProfile, fault_profile, serve
from pipeline.emulator._faults import spaced
from pipeline.errors import UsageError

pytestmark = pytest.mark.anyio

WS_SUBMIT = "/api/v3/kwaivgi/kling-image-o3/text-to-image"
SV_SUBMIT = "/api/v1/generation/kling-ai/o3-image"
SV_SSE = "/api/v1/generation/sse/kling-ai/o3-image"
WS_BODY: dict[str, Any] = {"prompt": "p", "aspect_ratio": "1:1", "resolution": "1k"}


def config(latency_s: float = 0.0, **faults: Any) -> EmulatorConfig:
    return EmulatorConfig(latency_s=latency_s, image_scale=0.125, faults=FaultProfile(**faults))


async def submit_status(session: aiohttp.ClientSession, url: str, body: object) -> int:
    try:
        async with session.post(url, json=body) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ServerDisconnectedError:
        return 0


@pytest.mark.parametrize(("rate", "count", "lost"), [(0.25, 8, 2), (0.3, 10, 3), (0.29, 100, 29)])
def test_spaced_is_an_exact_fraction(rate: float, count: int, lost: int) -> None:
    """Of N events exactly floor(N * rate) are chosen, spread out, and none at rate 0."""
    chosen = [k for k in range(1, count + 1) if spaced(rate, k)]
    assert len(chosen) == lost
    assert not any(spaced(0.0, k) for k in range(1, 50))
    assert all(spaced(1.0, k) for k in range(1, 50))


async def test_lost_reply_drops_exactly_that_fraction(session: aiohttp.ClientSession) -> None:
    """``lost_reply=0.25``: every 4th created task loses its reply, and all are charged."""
    async with serve(config(lost_reply=0.25)) as server:
        statuses = [
            await submit_status(session, server.base_url + WS_SUBMIT, WS_BODY | {"prompt": f"{i}"})
            for i in range(12)
        ]
        assert statuses == [200, 200, 200, 0] * 3
        stats = server.stats().wavespeed
        assert (stats.submits, stats.resets) == (12, 3)
        assert stats.charged == pytest.approx(12 * 0.028)


async def test_accepted_202(session: aiohttp.ClientSession) -> None:
    """``accepted_202`` answers a created task with 202 and the usual body."""
    async with serve(config(accepted_202=1.0)) as server:
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp:
            assert resp.status == 202
            assert (await resp.json())["status"] == "IN_QUEUE"
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            assert resp.status == 202
            assert (await resp.json())["data"]["status"] == "created"
        async with session.post(server.base_url + WS_SUBMIT, json={"prompt": ""}) as resp:
            assert resp.status == 400  # only created tasks are "accepted"


@pytest.mark.parametrize(
    ("shape", "skills_body", "wavespeed_body"),
    [
        (
            "default",
            {
                "error": "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
                "code": "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
                "message": "Insufficient credits",
            },
            {"code": 402, "message": "Insufficient balance"},
        ),
        (
            "split",
            {
                "error": "INSUFFICIENT_CREDITS",
                "code": "VIDEO_GENERATION_INSUFFICIENT_CREDITS",
                "message": "Insufficient credits",
            },
            {"code": 402, "message": "Insufficient balance"},
        ),
        (
            "legacy",
            {"error": "IMAGE_GENERATION_INSUFFICIENT_CREDITS", "message": "Insufficient credits"},
            {"code": 402, "message": "Insufficient balance"},
        ),
        (
            "cli",
            {
                "error": "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
                "code": "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
                "message": "Insufficient credits",
            },
            {"message": "Insufficient balance", "error_code": 402},
        ),
    ],
)
async def test_error_shapes(
    session: aiohttp.ClientSession,
    shape: str,
    skills_body: dict[str, Any],
    wavespeed_body: dict[str, Any],
) -> None:
    """``error_shape`` picks each provider's documented error body variant."""
    async with serve(config(credits_after=0, error_shape=shape)) as server:
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp:
            assert resp.status == 402
            assert await resp.json() == skills_body
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            assert resp.status == 402
            assert await resp.json() == wavespeed_body


async def test_split_shape_keeps_unprefixed_codes(session: aiohttp.ClientSession) -> None:
    """A code without the product prefix (``UNAUTHORIZED``) reads the same in ``split``."""
    cfg = EmulatorConfig(
        api_keys={"skills_video": "right"}, faults=FaultProfile(error_shape="split")
    )
    async with (
        serve(cfg) as server,
        session.post(server.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp,
    ):
        assert resp.status == 401
        body = await resp.json()
    assert body["error"] == body["code"] == "UNAUTHORIZED"


async def test_permission_denied(session: aiohttp.ClientSession) -> None:
    """``permission_denied`` answers submits 403 naming the key's role; polls pass."""
    async with serve(config(permission_denied=1.0)) as server:
        async with session.post(server.base_url + WS_SUBMIT, json=WS_BODY) as resp:
            assert resp.status == 403
            body = await resp.json()
        assert body["code"] == 403
        assert "role" in body["message"]
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "p"}) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "FORBIDDEN"
        async with session.get(server.base_url + "/api/v3/predictions/nope/result") as resp:
            assert resp.status == 404
        assert server.stats().wavespeed.submits == 0


@pytest.mark.parametrize(
    ("faults", "prompt", "ws_status", "sv_status", "sv_code"),
    [
        ({"task_cancel": 1.0}, "p", "cancelled", "CANCELED", None),
        ({}, "p [[cancel]]", "cancelled", "CANCELED", None),
        ({"task_timeout": 1.0}, "p", "timeout", "FAILED", "IMAGE_GENERATION_TIMEOUT"),
        ({}, "p [[timeout]]", "timeout", "FAILED", "IMAGE_GENERATION_TIMEOUT"),
    ],
)
async def test_cancelled_and_timed_out_tasks(
    session: aiohttp.ClientSession,
    faults: dict[str, Any],
    prompt: str,
    ws_status: str,
    sv_status: str,
    sv_code: str | None,
) -> None:
    """Cancelled and timed-out tasks end with each API's own status and no outputs."""
    async with serve(config(**faults)) as server:
        async with session.post(
            server.base_url + WS_SUBMIT, json=WS_BODY | {"prompt": prompt}
        ) as r:
            url = (await r.json())["data"]["urls"]["get"]
        async with session.get(url) as resp:
            data = (await resp.json())["data"]
        assert (data["status"], data["outputs"]) == (ws_status, [])
        assert data["error"]
        assert "code" not in data
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": prompt}) as resp:
            task_id = (await resp.json())["id"]
        async with session.get(f"{server.base_url}/api/v1/generation/{task_id}") as resp:
            gen = await resp.json()
        assert (gen["status"], gen.get("code"), gen["data"]) == (sv_status, sv_code, None)


async def test_cancelled_lower_case_spelling(session: aiohttp.ClientSession) -> None:
    """In the lower-case style a cancelled generation is ``canceled``."""
    cfg = EmulatorConfig(latency_s=0, skills_status_style="lower")
    async with serve(cfg) as server:
        async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "x [[cancel]]"}) as r:
            task_id = (await r.json())["id"]
        async with session.get(f"{server.base_url}/api/v1/generation/{task_id}") as resp:
            assert (await resp.json())["status"] == "canceled"


async def test_images_per_minute_counts_images(session: aiohttp.ClientSession) -> None:
    """``images_per_minute`` counts ``num_images`` in a rolling 60 s window; a refused
    submit creates nothing; an oversized one passes only into an empty window."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(images_per_minute=10, retry_after=7), clock=clock) as server:
        url = server.base_url + WS_SUBMIT

        async def send(n: int) -> int:
            async with session.post(url, json=WS_BODY | {"num_images": n}) as resp:
                if resp.status == 429:
                    assert resp.headers["Retry-After"] == "7"
                    assert "10 images per minute" in (await resp.json())["message"]
                return resp.status

        assert [await send(4), await send(4), await send(4), await send(2)] == [200, 200, 429, 200]
        clock.advance(30)
        assert await send(1) == 429
        clock.advance(30)  # the first three submits (10 images) left the window
        assert [await send(9), await send(1), await send(1)] == [200, 200, 429]
        clock.advance(60)
        assert [await send(9), await send(9)] == [200, 429]
        stats = server.stats().wavespeed
        assert stats.submits == 6
        assert stats.rate_limited == 4


async def test_a_job_larger_than_the_limit_runs_alone(session: aiohttp.ClientSession) -> None:
    """Under Bronze's 2 images per minute a 4-image job passes into an empty window only."""
    clock = VirtualClock(1000.0)  # moved by hand: advance()
    async with serve(config(images_per_minute=2), clock=clock) as server:
        statuses = []
        for step, n in ((0, 4), (0, 1), (59, 1), (1, 1), (0, 4), (60, 4)):
            clock.advance(step)
            async with session.post(
                server.base_url + WS_SUBMIT, json=WS_BODY | {"num_images": n}
            ) as resp:
                statuses.append(resp.status)
        assert statuses == [200, 429, 429, 200, 429, 200]


async def test_images_per_minute_on_skills(session: aiohttp.ClientSession) -> None:
    """The same limit applies to skills.video's ``n``."""
    async with serve(config(images_per_minute=4)) as server:
        statuses = []
        for n in (3, 2, 1):
            async with session.post(server.base_url + SV_SUBMIT, json={"prompt": "p", "n": n}) as r:
                statuses.append(r.status)
        assert statuses == [200, 429, 200]


async def test_sse_drop_cuts_the_stream_after_the_first_frame(
    session: aiohttp.ClientSession,
) -> None:
    """``sse_drop`` sends the queued frame (with the id), then cuts the stream; the task
    lives on and completes."""
    async with serve(config(latency_s=0.05, sse_drop=1.0)) as server:
        async with session.post(server.base_url + SV_SSE, json={"prompt": "p"}) as resp:
            assert resp.status == 200
            first = await resp.content.readline()
            assert await resp.content.readline() == b"\n"
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.content.read()
        frame = json.loads(first.removeprefix(b"data: "))
        assert frame["status"] == "IN_QUEUE"
        assert server.state.store.get(frame["id"]) is not None
        assert server.stats().skills_video.resets == 1


async def test_sse_lost_reply_before_the_first_frame(session: aiohttp.ClientSession) -> None:
    """``lost_reply`` on the SSE variant drops the connection before any frame."""
    async with serve(config(lost_reply=1.0)) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(server.base_url + SV_SSE, json={"prompt": "p"}) as resp:
                await resp.read()
        assert server.stats().skills_video.submits == 1


def test_new_fields_parse_from_the_command_line() -> None:
    """``--fault`` parses text, counts, optional values and booleans of the new fields."""
    profile = fault_profile(
        [
            "error_shape=split",
            "images_per_minute=10",
            "retention_s=none",
            "url_ttl_s=30",
            "truncate_first_download=yes",
            "lost_reply=0.1",
        ]
    )
    assert profile.error_shape == "split"
    assert profile.images_per_minute == 10
    assert profile.retention_s is None
    assert profile.url_ttl_s == 30.0
    assert profile.truncate_first_download is True
    assert profile.lost_reply == 0.1
    with pytest.raises(UsageError, match="error_shape"):
        fault_profile(["error_shape=fancy"])
    with pytest.raises(UsageError, match="not a number"):
        fault_profile(["images_per_minute=many"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lost_reply", 1.5),
        ("accepted_202", -0.1),
        ("sse_drop", 2.0),
        ("images_per_minute", 0),
        ("url_ttl_s", 0.0),
        ("retention_s", -1.0),
        ("purge_s", -1.0),
        ("error_shape", "html"),
    ],
)
def test_new_fields_are_validated(field: str, value: object) -> None:
    """Out-of-range values of the new fields are refused when the profile is built."""
    with pytest.raises(ValueError, match=field):
        FaultProfile(**{field: value})  # type: ignore[arg-type]
