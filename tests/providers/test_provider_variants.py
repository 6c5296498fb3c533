"""Both adapters against the providers' documented variants (the emulator's options):
202 Accepted, error-body shapes, 403 permission, cancelled/timeout tasks, image limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.errors import AuthError, InsufficientCredits, ProviderError, RateLimited
from pipeline.providers import TaskState
from pipeline.providers._body import parse_error_body
from pipeline.providers._http import error_for_status
from pipeline.providers._registry import ADAPTERS
from pipeline.providers._skills_video import SkillsVideoAdapter
from pipeline.providers._wavespeed import WaveSpeedAdapter

from ._support import KEY, make_job, wait_done

pytestmark = pytest.mark.anyio

PROVIDERS = ["wavespeed", "skills_video"]


def _adapter(server: EmulatorServer, name: str) -> WaveSpeedAdapter | SkillsVideoAdapter:
    return ADAPTERS[name](base_url=server.base_url, api_key=KEY)


def _config(**faults: Any) -> EmulatorConfig:
    return EmulatorConfig(latency_s=0.0, image_scale=0.125, faults=FaultProfile(**faults))


@pytest.mark.parametrize("name", PROVIDERS)
async def test_202_accepted_is_a_submit(name: str) -> None:
    """A submit answered 202 Accepted is a created task like a 200."""
    async with serve(_config(accepted_202=1.0)) as server, _adapter(server, name) as adapter:
        submitted = await adapter.submit(make_job())
        assert submitted.state is TaskState.QUEUED
        done = await wait_done(adapter, submitted.remote_id)
        assert done.state is TaskState.COMPLETED


@pytest.mark.parametrize(
    ("name", "shape", "code"),
    [
        ("skills_video", "default", "IMAGE_GENERATION_INSUFFICIENT_CREDITS"),
        ("skills_video", "split", "VIDEO_GENERATION_INSUFFICIENT_CREDITS"),
        ("skills_video", "legacy", "IMAGE_GENERATION_INSUFFICIENT_CREDITS"),
        ("wavespeed", "default", "402"),
        ("wavespeed", "cli", "402"),
    ],
)
async def test_error_shapes_read_the_same(name: str, shape: str, code: str) -> None:
    """Every error-body shape of a provider gives the same error class and its code."""
    cfg = _config(credits_after=0, error_shape=shape)
    async with serve(cfg) as server, _adapter(server, name) as adapter:
        with pytest.raises(InsufficientCredits) as info:
            await adapter.submit(make_job())
    assert (info.value.code, info.value.http_status) == (code, 402)
    assert info.value.message


@pytest.mark.parametrize("shape", ["split", "legacy"])
async def test_skills_rate_limit_code_in_every_shape(shape: str) -> None:
    """skills.video's 429 is RateLimited whichever of its code fields the body has."""
    cfg = _config(rate_429=1.0, error_shape=shape)
    async with serve(cfg) as server, _adapter(server, "skills_video") as adapter:
        with pytest.raises(RateLimited) as info:
            await adapter.submit(make_job())
    assert info.value.code.endswith("RATE_LIMITED")


@pytest.mark.parametrize("name", PROVIDERS)
async def test_permission_denied_is_an_auth_error_of_its_own(name: str) -> None:
    """A 403 "the key's role lacks permission" stops like an auth error, but says so."""
    async with serve(_config(permission_denied=1.0)) as server, _adapter(server, name) as adapter:
        with pytest.raises(AuthError) as info:
            await adapter.submit(make_job())
    assert (info.value.code, info.value.http_status) == ("permission_denied", 403)
    assert "role" in info.value.message
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("name", "prompt", "code", "retryable"),
    [
        ("wavespeed", "p [[cancel]]", "cancelled", False),
        ("wavespeed", "p [[timeout]]", "timeout", True),
        ("skills_video", "p [[cancel]]", "CANCELED", False),
        ("skills_video", "p [[timeout]]", "IMAGE_GENERATION_TIMEOUT", True),
    ],
)
async def test_cancelled_and_timed_out_tasks(
    emulator: EmulatorServer, name: str, prompt: str, code: str, retryable: bool
) -> None:
    """Cancelled and timed-out tasks are FAILED with their code; only a timeout may be
    run again."""
    async with _adapter(emulator, name) as adapter:
        status = await wait_done(adapter, (await adapter.submit(make_job(prompt))).remote_id)
    assert status.state is TaskState.FAILED
    assert (status.error_code, status.retryable) == (code, retryable)
    assert status.error_message


@pytest.mark.parametrize("name", PROVIDERS)
async def test_images_per_minute_is_rate_limited(name: str) -> None:
    """Over the images-per-minute limit a submit is RateLimited, nothing created."""
    async with serve(_config(images_per_minute=3)) as server, _adapter(server, name) as adapter:
        await adapter.submit(make_job(n=2))
        with pytest.raises(RateLimited):
            await adapter.submit(make_job(n=2))
        assert server.stats().for_provider(name).submits == 1


# --- the mapping itself -----------------------------------------------------------------


def _err(status: int, body: dict[str, Any]) -> ProviderError:
    return error_for_status("p", status, parse_error_body(json.dumps(body).encode()))


def test_cli_shape_error_code() -> None:
    """WaveSpeed's CLI shape ``{message, error_code}`` gives the code and message."""
    body = parse_error_body(b'{"message": "Invalid API key", "error_code": 401}')
    assert (body.code, body.message, body.structured) == ("401", "Invalid API key", True)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": 403, "message": "Account suspended"}, "403"),
        ({"code": 403, "message": "Your API key's role lacks permission"}, "permission_denied"),
        ({"error": "FORBIDDEN", "code": "PERMISSION_DENIED", "message": "no"}, "permission_denied"),
        ({"error": "FORBIDDEN", "code": "FORBIDDEN", "message": "Forbidden"}, "FORBIDDEN"),
    ],
)
def test_403_variants(body: dict[str, Any], code: str) -> None:
    """Every 403 is an AuthError; a permission problem carries ``permission_denied``."""
    err = _err(403, body)
    assert isinstance(err, AuthError)
    assert err.code == code


def test_rate_limited_code_on_another_status() -> None:
    """A ``*_RATE_LIMITED`` code is RateLimited even under a 400."""
    err = _err(400, {"error": "RATE_LIMITED", "code": "IMAGE_GENERATION_RATE_LIMITED"})
    assert isinstance(err, RateLimited)
    assert err.retryable


def test_split_insufficient_credits_on_400() -> None:
    """skills.video's split body (short ``error``, long ``code``) is read by its suffix."""
    err = _err(
        400, {"error": "INSUFFICIENT_CREDITS", "code": "VIDEO_GENERATION_INSUFFICIENT_CREDITS"}
    )
    assert isinstance(err, InsufficientCredits)
    assert err.code == "VIDEO_GENERATION_INSUFFICIENT_CREDITS"
