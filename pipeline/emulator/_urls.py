"""Image URLs: plain, or signed with an expiry like a CDN's pre-signed links.

A signed URL is ``/_emulator/files/{task}/{k}.{ext}?expires=MS&sig=HEX``: ``expires`` is
epoch milliseconds (the emulator's wall clock, which follows its injected clock) and
``sig`` an HMAC-SHA256 of the path and expiry under a key drawn once per emulator (not
from the seeded generator, so signing never changes the faults' draws).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIG_CHARS = 32


def file_path(task_id: str, k: int, fmt: str) -> str:
    """The emulator's URL path of image ``k`` (1-based) of a task."""
    return f"/_emulator/files/{task_id}/{k}.{fmt}"


def _signature(secret: bytes, path: str, expires_ms: int) -> str:
    mac = hmac.new(secret, f"{path}|{expires_ms}".encode(), hashlib.sha256)
    return mac.hexdigest()[:SIG_CHARS]


def signed_query(secret: bytes, path: str, expires_ms: int) -> str:
    """The query string that makes ``path`` valid until ``expires_ms``."""
    return f"expires={expires_ms}&sig={_signature(secret, path, expires_ms)}"


def refusal(secret: bytes, path: str, query: Mapping[str, str], now_ms: int) -> str | None:
    """Why a request for ``path`` with this query must be refused (403), or ``None``."""
    expires, sig = query.get("expires", ""), query.get("sig", "")
    if not expires.isdigit() or not sig:
        return "Request is not signed"
    if not hmac.compare_digest(sig, _signature(secret, path, int(expires))):
        return "Signature does not match"
    if now_ms >= int(expires):
        return "Request has expired"
    return None
