"""What an object store's refusal or failure means, translated in this one place.

obstore raises its own classes (``PermissionDeniedError``, ``AlreadyExistsError``...),
``FileNotFoundError`` for a 404, and ``GenericError`` for everything else, including
throttling (503 SlowDown) once its own retries are spent. :func:`fault_of` reads the
class, the HTTP status and the store's error code (``<Code>SlowDown</Code>``) out of
one, and the helpers below turn that into the pipeline's errors:

- a refusal (access denied, not authenticated, bucket or container missing, an operation
  the store does not support) -> :class:`OutputRefused`: sending the same request again
  cannot help, and no other image can be stored either;
- throttling, a 5xx, a timeout or a dropped connection -> ``DownloadError(retryable=True)``
  inside ``fetch`` (the engine retries downloads), ``OSError`` elsewhere;
- any other 4xx -> ``DownloadError(retryable=False)`` inside ``fetch`` (409, 408 and 429
  are retryable).

The store's own message is never kept, shown or chained (``from None``): it quotes the
request URL, which for some stores carries a signature or a SAS token. Only the class,
the status and the error code survive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from obstore.exceptions import (
    AlreadyExistsError,
    InvalidPathError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)

from pipeline.errors import DownloadError, PipelineError, StorageFailed

_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([A-Za-z]{1,64})</Code>")
_NO_BUCKET_CODES = frozenset({"NoSuchBucket", "ContainerNotFound"})
_REASONS = {
    "denied": "access denied",
    "unauthenticated": "the credentials were not accepted",
    "no_bucket": "the bucket or container does not exist",
    "unsupported": "the store does not support this operation",
}


class OutputRefused(StorageFailed):
    """The object store refused an operation that no retry can make succeed.

    ``location`` is the output's URL (never with credentials), ``path`` the object's path
    relative to it, ``operation`` what was refused (``write``, ``read``, ``list``,
    ``copy``), ``reason`` why in words, ``code`` the store's own error code when it gave
    one (``AccessDenied``, ``NoSuchBucket``...). Not retryable: every other write to the
    same output would be refused too, so the run should stop submitting new work and
    keep what was paid for waiting in its state until the output is fixed.
    """

    retryable = False

    def __init__(
        self, *, location: str, path: str, operation: str, reason: str, code: str | None = None
    ) -> None:
        self.path = path
        self.operation = operation
        self.code = code
        said = f" ({code})" if code else ""
        super().__init__(
            f"{location}: the object store refused to {operation} {path!r}: {reason}{said}",
            location=location,
            reason=reason,
        )


@dataclass(frozen=True, slots=True)
class StoreFault:
    """An obstore exception, reduced to what is safe to keep.

    ``kind``: ``denied``, ``unauthenticated``, ``no_bucket``, ``unsupported``,
    ``not_found`` (an object is absent), ``conflict`` (a precondition failed: someone else
    wrote the object), ``invalid`` (a path the store cannot name) or ``failed``
    (anything else: throttling, 5xx, network).
    """

    kind: str
    status: int | None
    code: str | None

    @property
    def refused(self) -> bool:
        return self.kind in _REASONS

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (throttling, 5xx, network)."""
        if self.kind == "conflict":
            return True
        if self.kind != "failed":
            return False
        # 409: S3's ConditionalRequestConflict (a concurrent conditional write).
        return self.status is None or self.status in (408, 409, 429) or self.status >= 500

    def describe(self) -> str:
        """Status and code, e.g. ``HTTP 503 SlowDown``, or the kind."""
        parts = [f"HTTP {self.status}"] if self.status is not None else []
        if self.code:
            parts.append(self.code)
        return " ".join(parts) or self.kind.replace("_", " ")


def fault_of(exc: BaseException) -> StoreFault:
    """Classify an exception raised by an obstore call (its text is read, not kept)."""
    text = str(exc)
    found = _STATUS.search(text)
    status = int(found.group(1)) if found else None
    named = _CODE.search(text)
    code = named.group(1) if named else None
    if isinstance(exc, PermissionDeniedError) or status == 403:
        kind = "denied"
    elif isinstance(exc, UnauthenticatedError) or status == 401:
        kind = "unauthenticated"
    elif code in _NO_BUCKET_CODES:
        kind = "no_bucket"
    elif isinstance(exc, FileNotFoundError):
        kind = "not_found"
    elif isinstance(exc, (AlreadyExistsError, PreconditionError)):
        kind = "conflict"
    elif isinstance(exc, NotSupportedError) or status == 501:
        kind = "unsupported"
    elif isinstance(exc, (InvalidPathError, ValueError)):
        kind = "invalid"
    else:
        kind = "failed"
    return StoreFault(kind, status, code)


def written(fault: StoreFault) -> StoreFault:
    """``fault`` as the answer to a write: a 404 there means the bucket is missing."""
    return StoreFault("no_bucket", fault.status, fault.code) if fault.kind == "not_found" else fault


def refusal(fault: StoreFault, *, location: str, path: str, operation: str) -> OutputRefused:
    """The :class:`OutputRefused` for a refused ``fault``."""
    return OutputRefused(
        location=location,
        path=path,
        operation=operation,
        reason=_REASONS[fault.kind],
        code=fault.code,
    )


def write_error(exc: BaseException, *, location: str, path: str, url: str) -> PipelineError:
    """The error ``fetch`` raises for a failed store call about ``path`` (the image from
    ``url``): :class:`OutputRefused` or a ``DownloadError``. A 404 means the bucket is
    missing (a write cannot miss its object; a HEAD's 404 is handled before)."""
    fault = written(fault_of(exc))
    if fault.refused:
        return refusal(fault, location=location, path=path, operation="write")
    if fault.kind == "conflict":
        message = f"{path} was changed by another writer meanwhile"
    else:
        message = f"object store failed to store {path}: {fault.describe()}"
    return DownloadError(message, url=url, retryable=fault.retryable)


def other_error(exc: BaseException, *, location: str, path: str, operation: str) -> Exception:
    """The error a non-download operation raises: :class:`OutputRefused` for a refusal,
    ``FileNotFoundError`` for an absent object, else ``OSError``."""
    fault = fault_of(exc)
    if fault.refused:
        return refusal(fault, location=location, path=path, operation=operation)
    if fault.kind == "not_found":
        return FileNotFoundError(f"{location}: {path} is not there")
    return OSError(f"{location}: cannot {operation} {path}: {fault.describe()}")
