"""HTTP error answers -> the pipeline's errors, and ``Retry-After``.

By status, after reading the body's code and message (:func:`~._body.parse_error_body`):

- 402, or a code/message saying insufficient credits/balance -> ``InsufficientCredits``
- 401 -> ``AuthError`` (the provider's code); 403 -> ``AuthError`` too, with code
  ``permission_denied`` when the answer says the key's role lacks permission (so the
  ledger tells a permission problem from a rejected key or a suspended account: all three
  stop the lane)
- 429, or a code ending ``RATE_LIMITED`` on any 4xx -> ``RateLimited(retry_after)`` from
  ``Retry-After``
- 408 -> ``ProviderTimeout`` (retryable); other 4xx (400, 404, 422...) -> ``ProviderError``,
  not retryable, with the provider's code (``http_<status>`` when it sent none)
- 5xx -> ``ProviderError``, retryable; 3xx (redirects are not followed) -> final.

skills.video's codes are matched on their suffix (``IMAGE_GENERATION_RATE_LIMITED``,
``VIDEO_GENERATION_INSUFFICIENT_CREDITS``...): its ``code`` and ``error`` fields do not
always agree, and the prefix names the product, not the problem.

Submit decision: both APIs hand out a task id only in a 2xx answer, so an HTTP error answer
from the provider itself means no task was created and retrying the submit is safe. The one
exception is a 502/504 whose body is not the provider's JSON: that comes from a gateway which
gave up waiting for the provider, which may have created the task, so it is ``OutcomeUnknown``.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import (
    AuthError,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)
from pipeline.providers._body import ErrorBody

PERMISSION_DENIED = "permission_denied"
_INSUFFICIENT = re.compile(r"insufficient[ _-]?(credit|balance|fund)", re.IGNORECASE)
_PERMISSION = re.compile(r"permission|\brole\b|\bscopes?\b", re.IGNORECASE)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns ``None`` when absent or invalid; a date in the past gives ``0.0``.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def error_for_status(
    provider: str,
    status: int,
    body: ErrorBody,
    *,
    retry_after: float | None = None,
    creates_task: bool = False,
) -> ProviderError:
    """The pipeline error for an HTTP error answer (see the module docstring)."""
    code = body.code
    message = body.message or f"HTTP {status} with no message"
    kw: dict[str, Any] = {"provider": provider, "http_status": status}
    said = f"{code or ''} {body.message or ''}"
    if status == 402 or _INSUFFICIENT.search(said):
        return InsufficientCredits(message, code=code, **kw)
    if status == 403 and _PERMISSION.search(said):
        return AuthError(message, code=PERMISSION_DENIED, **kw)
    if status in (401, 403):
        return AuthError(message, code=code, **kw)
    if status == 429 or (status < 500 and (code or "").upper().endswith("RATE_LIMITED")):
        return RateLimited(message, retry_after=retry_after, code=code, **kw)
    if status == 408:
        return ProviderTimeout(message, code=code, **kw)
    fallback = code or f"http_{status}"
    if status >= 500:
        if creates_task and status in (502, 504) and not body.structured:
            return OutcomeUnknown(
                f"gateway error, the task may exist: {message}", code=fallback, **kw
            )
        return ProviderError(message, code=fallback, retryable=True, **kw)
    return ProviderError(message, code=fallback, retryable=False, **kw)
