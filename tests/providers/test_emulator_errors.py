"""Error mapping end to end: the emulator's HTTP errors and injected faults, through both
adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile
from pipeline.errors import (
    AuthError,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    UsageError,
)
from pipeline.providers._registry import ADAPTERS, create_adapter
from pipeline.providers._skills_video import SkillsVideoAdapter
from pipeline.providers._wavespeed import WaveSpeedAdapter

from ._support import KEY, SECRET, make_job

Tasks = Callable[[str], Awaitable[list[dict[str, Any]]]]


# --- the emulator's errors and faults, through both adapters ----------------------------

PROVIDERS = ["wavespeed", "skills_video"]


def _adapter(server: EmulatorServer, name: str, **kw: Any) -> WaveSpeedAdapter | SkillsVideoAdapter:
    kw.setdefault("api_key", KEY)
    return ADAPTERS[name](base_url=server.base_url, **kw)


def _faulty(**faults: Any) -> EmulatorConfig:
    return EmulatorConfig(latency_s=0.0, image_scale=0.125, faults=FaultProfile(**faults))


def test_unknown_provider_name() -> None:
    """create_adapter rejects a provider it does not know, naming the known ones."""
    with pytest.raises(UsageError, match="skills_video, wavespeed"):
        create_adapter("midjourney", api_key=KEY)


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize(
    "emulator_config",
    [EmulatorConfig(latency_s=0.0, api_keys={"wavespeed": "right", "skills_video": "right"})],
)
async def test_wrong_key_is_auth_error(emulator: EmulatorServer, name: str) -> None:
    """A rejected key is AuthError (401, final) on submit and poll, and never echoed."""
    async with _adapter(emulator, name, api_key=SECRET) as adapter:
        with pytest.raises(AuthError) as submit_info:
            await adapter.submit(make_job())
        with pytest.raises(AuthError) as poll_info:
            await adapter.poll("abc")
    for err in (submit_info.value, poll_info.value):
        assert (err.http_status, err.retryable, err.provider) == (401, False, name)
        assert SECRET not in str(err)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "code", "field"),
    [("wavespeed", "400", "num_images"), ("skills_video", "IMAGE_GENERATION_INVALID_INPUT", "n")],
)
async def test_out_of_range_is_validation_error(
    emulator: EmulatorServer, name: str, code: str, field: str
) -> None:
    """n=10 is refused with 400: final, with the provider's code and a message naming the field."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(ProviderError) as info:
            await adapter.submit(make_job(n=10))
    err = info.value
    assert type(err) is ProviderError
    assert (err.http_status, err.code, err.retryable) == (400, code, False)
    assert field in err.message
    assert emulator.stats().for_provider(name).submits == 0


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
async def test_unknown_id_is_404(emulator: EmulatorServer, name: str) -> None:
    """Polling an id the provider does not know is a final 404."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(ProviderError) as info:
            await adapter.poll("no-such-task/../x")
    assert (info.value.http_status, info.value.retryable) == (404, False)


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("emulator_config", [_faulty(credits_after=0)])
async def test_out_of_credit(emulator: EmulatorServer, name: str) -> None:
    """402 is InsufficientCredits, final."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(InsufficientCredits) as info:
            await adapter.submit(make_job())
    assert (info.value.http_status, info.value.retryable) == (402, False)


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("emulator_config", [_faulty(rate_429=1.0, retry_after=3)])
async def test_rate_limited(emulator: EmulatorServer, name: str) -> None:
    """429 is RateLimited with the Retry-After seconds, on submit and poll."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(RateLimited) as submit_info:
            await adapter.submit(make_job())
        with pytest.raises(RateLimited) as poll_info:
            await adapter.poll("abc")
    for err in (submit_info.value, poll_info.value):
        assert (err.retry_after, err.retryable, err.http_status) == (3.0, True, 429)


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("emulator_config", [_faulty(submit_5xx=1.0, poll_5xx=1.0)])
async def test_5xx_is_retryable(emulator: EmulatorServer, name: str) -> None:
    """A provider 5xx (no task created) is retryable for submit and poll."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(ProviderError) as submit_info:
            await adapter.submit(make_job())
        with pytest.raises(ProviderError) as poll_info:
            await adapter.poll("abc")
    for err in (submit_info.value, poll_info.value):
        assert type(err) is ProviderError
        assert err.retryable
        assert err.http_status is not None
        assert err.http_status >= 500
    assert emulator.stats().for_provider(name).submits == 0


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("emulator_config", [_faulty(reset=1.0)])
async def test_reset_after_send(emulator: EmulatorServer, name: str) -> None:
    """A dropped submit is OutcomeUnknown (the task exists); a dropped poll is retryable."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(OutcomeUnknown) as submit_info:
            await adapter.submit(make_job())
        with pytest.raises(ProviderUnreachable) as poll_info:
            await adapter.poll("abc")
    assert not submit_info.value.retryable
    assert poll_info.value.retryable
    assert emulator.stats().for_provider(name).submits == 1


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("emulator_config", [_faulty(malformed_json=1.0)])
async def test_malformed_json(emulator: EmulatorServer, emulator_tasks: Tasks, name: str) -> None:
    """A truncated 200 is OutcomeUnknown on submit and a retryable bad_response on poll."""
    async with _adapter(emulator, name) as adapter:
        with pytest.raises(OutcomeUnknown) as submit_info:
            await adapter.submit(make_job())
        [task] = await emulator_tasks(name)
        with pytest.raises(ProviderError) as poll_info:
            await adapter.poll(task["id"])
    assert submit_info.value.code == "bad_response"
    assert (poll_info.value.code, poll_info.value.retryable) == ("bad_response", True)


@pytest.mark.anyio
@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("emulator_config", [_faulty(slow_s=0.5, slow_rate=1.0)])
async def test_timeouts(emulator: EmulatorServer, name: str) -> None:
    """A submit with no answer in time is OutcomeUnknown; a poll is a retryable timeout."""
    async with _adapter(emulator, name, request_timeout_s=0.1) as adapter:
        with pytest.raises(OutcomeUnknown) as submit_info:
            await adapter.submit(make_job())
        with pytest.raises(ProviderTimeout) as poll_info:
            await adapter.poll("abc")
    assert "timed out" in submit_info.value.message
    assert poll_info.value.retryable
