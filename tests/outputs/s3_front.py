"""A reverse proxy in front of the moto S3 server that answers like a busy or strict S3
(503 SlowDown, 403 AccessDenied on writes, parts held back): the faults a real bucket
gives that moto does not play by itself. Everything else goes through to moto."""

from __future__ import annotations

import io

import aiohttp
import anyio
from aiohttp import web

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


async def serve_local(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1:0; the runner and its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


class S3Front:
    """A reverse proxy in front of moto that can answer like a busy or strict S3.

    ``slow_puts``: the next that many PUTs get 503 SlowDown; ``slow_parts``: the part
    uploads with these numbers get it once each; ``deny_writes``: PUTs and POSTs get 403
    AccessDenied (``deny_after_puts``: once that many PUTs went through, as a bucket
    whose policy changed mid-run); ``hold_from_part``: part uploads from this number on wait for
    ``release`` (``part_seen`` is set when the first of them arrives).
    """

    def __init__(self, upstream: str, session: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.session = session
        self.url = ""
        self.slow_puts = 0
        self.slow_parts: set[int] = set()
        self.deny_writes = False
        self.deny_after_puts: int | None = None
        self.hold_from_part: int | None = None
        self.release = anyio.Event()
        self.part_seen = anyio.Event()
        self.puts = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except ConnectionResetError:  # the client gave up on this request (an abort)
            return web.Response(status=499)
        part = int(request.query.get("partNumber", 0)) if request.method == "PUT" else 0
        if request.method == "PUT":
            self.puts += 1
        if self.deny_after_puts is not None and self.puts > self.deny_after_puts:
            self.deny_writes = True
        if self.deny_writes and request.method in ("PUT", "POST"):
            return _s3_error(403, "AccessDenied", "Access Denied")
        if request.method == "PUT" and self.slow_puts > 0:
            self.slow_puts -= 1
            return _s3_error(503, "SlowDown", "Please reduce your request rate.")
        if part in self.slow_parts:
            self.slow_parts.discard(part)
            return _s3_error(503, "SlowDown", "Please reduce your request rate.")
        if part and self.hold_from_part is not None and part >= self.hold_from_part:
            self.part_seen.set()
            await self.release.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=io.BytesIO(body),  # streamed on: a big part would lock the loop
            allow_redirects=False,
        ) as reply:
            data = await reply.read()
            out = {
                k: v
                for k, v in reply.headers.items()
                if k.lower() not in _HOP_HEADERS
                or (request.method == "HEAD" and k == "Content-Length")
            }
            return web.Response(
                status=reply.status, body=None if request.method == "HEAD" else data, headers=out
            )
