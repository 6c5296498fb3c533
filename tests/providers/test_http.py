"""The HTTP helper against a real local server with odd answers (HTML gateways, endless
bodies, echoed keys) and against a closed port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from pipeline.errors import (
    AuthError,
    OutcomeUnknown,
    ProviderError,
    ProviderUnreachable,
    RateLimited,
)
from pipeline.jobs import Job, JobParams
from pipeline.providers._body import MAX_MESSAGE_CHARS
from pipeline.providers._http import HttpClient
from pipeline.providers._skills_video import SkillsVideoAdapter
from pipeline.providers._wavespeed import WaveSpeedAdapter

from ._support import SECRET


async def _odd(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    if kind == "gateway":
        return web.Response(status=502, text="<html><title>Bad Gateway</title></html>")
    if kind == "huge":
        return web.Response(status=500, body=b"E" * (2 * 1024 * 1024))
    if kind == "echo":
        auth = request.headers.get("Authorization", "")
        return web.json_response({"code": 401, "message": f"bad key {auth}"}, status=401)
    if kind == "endless":
        # An error body that never ends: only a capped read gets past it.
        stream = web.StreamResponse(status=500)
        await stream.prepare(request)
        try:
            while True:
                await stream.write(b"E" * 16384)
                await anyio.sleep(0.005)
        except (ConnectionError, RuntimeError):
            return stream
    if kind == "text200":
        return web.Response(text="OK then")
    if kind == "date429":
        return web.json_response({}, status=429, headers={"Retry-After": "not-a-date"})
    raise web.HTTPNotFound()


@pytest.fixture
def unused_port() -> int:
    """A local port that was free a moment ago: nothing listens on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    """A tiny real HTTP server on 127.0.0.1:0 with deliberately odd answers."""
    app = web.Application()
    app.router.add_route("*", "/odd/{kind}", _odd)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_gateway_html_on_real_submit(odd_server: str) -> None:
    """An HTML 502 on a submit is OutcomeUnknown; on a GET it is a retryable error."""
    client = HttpClient(provider="p", base_url=odd_server, api_key=SECRET)
    try:
        with pytest.raises(OutcomeUnknown) as info:
            await client.request("POST", "/odd/gateway", json_body={}, creates_task=True)
        assert info.value.http_status == 502
        with pytest.raises(ProviderError) as poll_info:
            await client.request("GET", "/odd/gateway")
        assert poll_info.value.retryable
        assert "Bad Gateway" in poll_info.value.message
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_huge_error_body_is_capped(odd_server: str) -> None:
    """A 2 MiB error body is read only up to the cap and still maps cleanly."""
    client = HttpClient(provider="p", base_url=odd_server, api_key=SECRET)
    try:
        with pytest.raises(ProviderError) as info:
            await client.request("GET", "/odd/huge")
        assert info.value.http_status == 500
        assert len(info.value.message) <= MAX_MESSAGE_CHARS
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_endless_error_body_is_not_read_to_the_end(odd_server: str) -> None:
    """An error body that never ends is cut at the cap, not waited on until the timeout."""
    client = HttpClient(provider="p", base_url=odd_server, api_key=SECRET, request_timeout_s=5)
    try:
        with anyio.fail_after(1):
            with pytest.raises(ProviderError) as info:
                await client.request("GET", "/odd/endless")
        assert type(info.value) is ProviderError
        assert info.value.http_status == 500
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_echoed_key_is_redacted(odd_server: str) -> None:
    """Even if a server echoes the Authorization header, the key never reaches a message."""
    client = HttpClient(provider="p", base_url=odd_server, api_key=SECRET)
    try:
        with pytest.raises(AuthError) as info:
            await client.request("GET", "/odd/echo")
        assert SECRET not in str(info.value)
        assert "[redacted]" in info.value.message
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_non_json_200(odd_server: str) -> None:
    """A 200 that is not JSON is bad_response: retryable for a GET, OutcomeUnknown for a submit."""
    client = HttpClient(provider="p", base_url=odd_server, api_key=SECRET)
    try:
        with pytest.raises(ProviderError) as info:
            await client.request("GET", "/odd/text200")
        assert (info.value.code, info.value.retryable) == ("bad_response", True)
        with pytest.raises(OutcomeUnknown):
            await client.request("POST", "/odd/text200", json_body={}, creates_task=True)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_invalid_retry_after_on_real_429(odd_server: str) -> None:
    """An unparseable Retry-After still gives RateLimited, with no wait."""
    client = HttpClient(provider="p", base_url=odd_server, api_key=SECRET)
    try:
        with pytest.raises(RateLimited) as info:
            await client.request("GET", "/odd/date429")
        assert info.value.retry_after is None
    finally:
        await client.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("adapter_cls", [WaveSpeedAdapter, SkillsVideoAdapter])
async def test_connection_refused(
    adapter_cls: type[WaveSpeedAdapter] | type[SkillsVideoAdapter], unused_port: int
) -> None:
    """A closed port is ProviderUnreachable, retryable even for a submit (nothing was sent)."""
    job = Job(id="j", prompt_id="j", provider="x", prompt="a cat", params=JobParams())
    async with adapter_cls(base_url=f"http://127.0.0.1:{unused_port}", api_key=SECRET) as adapter:
        with pytest.raises(ProviderUnreachable) as submit_info:
            await adapter.submit(job)
        with pytest.raises(ProviderUnreachable) as poll_info:
            await adapter.poll("abc")
    for err in (submit_info.value, poll_info.value):
        assert err.retryable
        assert err.code == "network"
        assert SECRET not in str(err)
