"""Reply helpers shared by both APIs: JSON bodies, each provider's error shape, faults.

WaveSpeed errors are ``{code, message}`` (``code`` the HTTP status unless the provider
has its own), or ``{message, error_code}`` as the official CLI reads them; skills.video
errors are ``{error, code, message}`` with ``error`` repeating the code for old clients,
or (its current docs) a short ``error`` beside a longer ``code``, or (older) ``{error,
message}`` only. Which one a reply uses is the profile's ``error_shape``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from pipeline.emulator._stats import Counters

SKILLS_CODES: dict[int, str] = {
    400: "IMAGE_GENERATION_INVALID_INPUT",
    401: "UNAUTHORIZED",
    402: "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    422: "IMAGE_GENERATION_CONTENT_REJECTED",
    429: "IMAGE_GENERATION_RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "IMAGE_GENERATION_UPSTREAM_FAILED",
    503: "IMAGE_GENERATION_PROVIDER_UNAVAILABLE",
    504: "IMAGE_GENERATION_TIMEOUT",
}
REASONS: dict[int, str] = {
    400: "Invalid request",
    401: "Unauthorized: missing or invalid API key",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not found",
    422: "Content rejected by moderation",
    429: "Too many requests",
    500: "Internal server error",
    502: "Upstream provider failed",
    503: "Service unavailable",
    504: "Gateway timeout",
}
PERMISSION_MESSAGE = "Permission denied: this API key's role may not use this model"
_SKILLS_PREFIX = "IMAGE_GENERATION_"
_SKILLS_SPLIT_PREFIX = "VIDEO_GENERATION_"
_MALFORMED = '{"code": 200, "message": "success", "data": {"id": "'
_BEARER = re.compile(r"Bearer\s+(\S.*)", re.IGNORECASE)


class InvalidInput(Exception):
    """A request body failed validation; ``message`` names the field."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def json_reply(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response with a compact body."""
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_body(
    provider: str, status: int, message: str, code: str | int | None, shape: str = "default"
) -> dict[str, Any]:
    """The provider's error body for ``status``, in ``shape`` (see the module docstring)."""
    if provider == "skills_video":
        name = code if isinstance(code, str) else SKILLS_CODES.get(status, "ERROR")
        if shape == "legacy":
            return {"error": name, "message": message}
        if shape == "split" and name.startswith(_SKILLS_PREFIX):
            short = name.removeprefix(_SKILLS_PREFIX)
            return {"error": short, "code": _SKILLS_SPLIT_PREFIX + short, "message": message}
        return {"error": name, "code": name, "message": message}
    value = status if code is None else code
    if shape == "cli":
        return {"message": message, "error_code": value}
    return {"code": value, "message": message}


def error_reply(
    counters: Counters,
    provider: str,
    status: int,
    message: str | None = None,
    *,
    code: str | int | None = None,
    headers: Mapping[str, str] | None = None,
    shape: str = "default",
) -> web.Response:
    """An error response in the provider's shape, counted in its stats."""
    counters.record_status(status)
    text = message if message is not None else REASONS.get(status, "Error")
    return json_reply(error_body(provider, status, text, code, shape), status, headers)


def malformed_reply() -> web.Response:
    """A 200 whose JSON body is cut short."""
    return web.Response(text=_MALFORMED, content_type="application/json")


def drop_connection(request: web.Request, counters: Counters) -> web.Response:
    """Close the connection without any reply; the returned response is never sent."""
    counters.resets += 1
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=499)


def bearer(request: web.Request) -> str | None:
    """The bearer token of the request, or ``None`` when there is none."""
    match = _BEARER.fullmatch(request.headers.get("Authorization", "").strip())
    return match.group(1).strip() if match else None


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body. Raises ``InvalidInput`` if it is not one."""
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def retry_after_header(retry_after: float | None) -> dict[str, str]:
    """``Retry-After`` as whole seconds when it is integral, else decimal seconds."""
    if retry_after is None:
        return {}
    text = str(int(retry_after)) if float(retry_after).is_integer() else f"{retry_after:g}"
    return {"Retry-After": text}


def is_http_url(value: object) -> bool:
    """Whether ``value`` is an absolute http(s) URL string."""
    return isinstance(value, str) and re.match(r"https?://[^\s/]+", value) is not None
