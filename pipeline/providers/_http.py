"""The adapters' one HTTP helper: every aiohttp failure and HTTP error is mapped here.

Network failures (``creates_task`` is true only for a submit):

=====================================  ==========================  ===========================
what happened                          submit                      poll / cancel / list
=====================================  ==========================  ===========================
connect failed (``ClientConnector*``)  ProviderUnreachable, retry  ProviderUnreachable, retry
  (a TLS certificate failure: final)
connect timed out (never sent)         ProviderTimeout, retry      ProviderTimeout, retry
timed out after sending                OutcomeUnknown, no retry    ProviderTimeout, retry
disconnected / reset after sending     OutcomeUnknown, no retry    ProviderUnreachable, retry
2xx with an unreadable body            OutcomeUnknown (bad_resp.)  ProviderError bad_response,
                                                                   retry
=====================================  ==========================  ===========================

HTTP error answers (body parsed for the provider's ``code``/``message``; at most 64 KiB read)
are mapped by :func:`~pipeline.providers._status.error_for_status` (402 credits, 401/403
auth, 429 rate limited, 5xx retryable...; see that module).

Streams (:meth:`HttpClient.open_stream`, a submit that answers ``text/event-stream``)
follow the submit rules until the answer's headers arrive; reading the stream is the
caller's (``pipeline.providers._sse``).

No message ever contains the API key (it is redacted even if a server echoes it back).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import aiohttp

from pipeline.errors import (
    OutcomeUnknown,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
)
from pipeline.providers._body import ErrorBody, bad_response, parse_error_body, text_snippet
from pipeline.providers._status import error_for_status, parse_retry_after
from pipeline.providers.base import ProviderAdapter
from pipeline.providers.specs import ProviderSpec

__all__ = ["HttpAdapter", "HttpClient", "error_for_status", "parse_retry_after"]

MAX_ERROR_BODY = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
_CONNECT_TIMEOUT_S = 10.0


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether there was more."""
    declared = response.content_length
    if declared is not None and declared <= limit:
        # aiohttp stops at Content-Length: reading the whole body stays within the cap.
        return await response.read(), False
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    return data[:limit], len(data) > limit


class HttpClient:
    """JSON over HTTP for one provider, with the error mapping above.

    Owns its ``aiohttp.ClientSession`` (created on first use) unless one is passed in.
    The API key is sent per request, so a shared session never carries it.
    """

    __slots__ = (
        "_api_key",
        "_base_url",
        "_headers",
        "_owns_session",
        "_provider",
        "_session",
        "_timeout",
    )

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        api_key: str,
        session: aiohttp.ClientSession | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        self._provider = provider
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout_s, sock_connect=min(_CONNECT_TIMEOUT_S, request_timeout_s)
        )

    def __repr__(self) -> str:
        return f"HttpClient({self._provider!r}, {self._base_url!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def network_error(self, exc: Exception, *, creates_task: bool) -> ProviderError:
        """The pipeline error for an aiohttp or timeout error (see the module table)."""
        kw: dict[str, Any] = {"provider": self._provider}
        detail = self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if isinstance(exc, aiohttp.ClientConnectorError):
            # The TCP/TLS connection was never made: nothing was sent. A TLS failure
            # (bad certificate) will not fix itself, so it is final.
            return ProviderUnreachable(
                f"cannot connect to {self._base_url}: {detail}",
                retryable=not isinstance(exc, aiohttp.ClientSSLError),
                **kw,
            )
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return ProviderTimeout(f"connecting to {self._base_url} timed out", **kw)
        if isinstance(exc, aiohttp.InvalidURL):
            return ProviderError(f"invalid URL: {detail}", code="invalid_url", **kw)
        timed_out = isinstance(exc, TimeoutError)
        if creates_task:
            what = "timed out" if timed_out else "failed"
            return OutcomeUnknown(f"submit {what} after sending; a task may exist: {detail}", **kw)
        if timed_out:
            return ProviderTimeout(f"no answer in time: {detail}", **kw)
        return ProviderUnreachable(f"connection failed: {detail}", **kw)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        creates_task: bool = False,
    ) -> object:
        """Send one request and return the decoded JSON body of a 2xx answer.

        Raises the ``ProviderError`` subclass the module table gives; never an aiohttp error.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method,
                self._base_url + path,
                json=json_body,
                params=params,
                headers=self._headers,
                timeout=self._timeout,
                # A redirected POST turns into a GET; providers do not redirect API calls.
                allow_redirects=False,
            ) as response:
                status = response.status
                limit = MAX_BODY if status < 300 else MAX_ERROR_BODY
                raw, truncated = await _read_capped(response, limit)
                retry_after_header = response.headers.get("Retry-After")
        except aiohttp.ClientError as exc:
            raise self.network_error(exc, creates_task=creates_task) from exc
        except TimeoutError as exc:
            raise self.network_error(exc, creates_task=creates_task) from exc
        if status >= 300:
            raise self._error_answer(status, raw, retry_after_header, creates_task=creates_task)
        if truncated:
            raise bad_response(
                self._provider, f"response body over {MAX_BODY} bytes", creates_task=creates_task
            )
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            snippet = self._redact(text_snippet(raw) or "empty body")
            raise bad_response(
                self._provider, f"response is not JSON: {snippet}", creates_task=creates_task
            ) from exc

    def _error_answer(
        self, status: int, raw: bytes, retry_after: str | None, *, creates_task: bool
    ) -> ProviderError:
        body = parse_error_body(raw)
        if body.message is not None:
            body = ErrorBody(body.code, self._redact(body.message), body.structured)
        return error_for_status(
            self._provider,
            status,
            body,
            retry_after=parse_retry_after(retry_after),
            creates_task=creates_task,
        )

    @asynccontextmanager
    async def open_stream(
        self, path: str, *, json_body: Mapping[str, Any], idle_s: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a submit that answers a stream; the block gets the 2xx response with its
        body unread, and the connection is closed when the block ends.

        Raises like a submit until the headers arrive (an error answer mapped by status,
        no answer ``OutcomeUnknown``). Reading the body may raise aiohttp errors or
        ``TimeoutError`` (no byte for ``idle_s`` seconds): the caller maps them, with
        :meth:`network_error`.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout.sock_connect, sock_read=idle_s
        )
        headers = {**self._headers, "Accept": "text/event-stream"}
        try:
            response = await self._session.post(
                self._base_url + path,
                json=json_body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.network_error(exc, creates_task=True) from exc
        try:
            if response.status >= 300:
                try:
                    raw, _ = await _read_capped(response, MAX_ERROR_BODY)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise self.network_error(exc, creates_task=True) from exc
                retry_after = response.headers.get("Retry-After")
                raise self._error_answer(response.status, raw, retry_after, creates_task=True)
            yield response
        finally:
            response.close()

    async def aclose(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


class HttpAdapter(ProviderAdapter):
    """What every adapter shares: the constructor, ``aclose`` and ``async with`` (and the
    protocol's defaults for listing and cancelling).

    Subclasses set ``spec`` (a ``ProviderSpec``) and talk through ``self._http``.
    """

    spec: ProviderSpec

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        session: aiohttp.ClientSession | None = None,
        usd_per_credit: float | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.usd_per_credit = usd_per_credit
        self._http = HttpClient(
            provider=self.spec.name,
            base_url=base_url,
            api_key=api_key,
            session=session,
            request_timeout_s=request_timeout_s,
        )

    async def aclose(self) -> None:
        """Close the session if the adapter created it."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
