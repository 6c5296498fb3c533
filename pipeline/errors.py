"""The pipeline's one error tree.

::

    PipelineError
    ├── UsageError               bad command line or environment (exit 2, nothing sent)
    ├── ManifestError            one or more problems in a manifest (exit 2, nothing sent)
    ├── ProviderError            a provider answered with an error, or could not be reached
    │   ├── RateLimited          HTTP 429; ``retry_after`` seconds when the provider said
    │   ├── ProviderTimeout      no answer in time (retryable)
    │   ├── ProviderUnreachable  connection refused/reset before an answer (retryable)
    │   ├── AuthError            401/403: the lane stops
    │   ├── InsufficientCredits  402 (or the provider's equivalent): the lane stops
    │   └── OutcomeUnknown       a submit was sent but no reply came: a task may exist
    ├── DownloadError            an image could not be fetched or failed its checks
    ├── StorageFailed            the output refused a write (full disk, quota, read-only,
    │                            permission, a bucket refusing): the run stops, paid work waits
    ├── StateError               the run state cannot be read or written
    └── BudgetExhausted          the next job could take spend past the cap

A task that ends failed at the provider raises nothing: its job is recorded failed with
the provider's code. Every exception builds its own message from structured fields;
callers match on classes and fields (``code`` is an :class:`ErrorCode` or the provider's
own code), never on message text. Foreign exceptions (aiohttp, OSError) are translated in
one helper per boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass


class ErrorCode(enum.StrEnum):
    """The pipeline's own error codes, as the ledger records them (``error.code``).

    A job that failed at the provider carries the provider's code instead (``1403``,
    ``IMAGE_GENERATION_FAILED``...), and a pipeline code keeps the provider's one beside
    it as ``provider_code``.
    """

    PROVIDER_ERROR = "provider_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    NETWORK = "network"
    AUTH = "auth"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    OUTCOME_UNKNOWN = "outcome_unknown"
    BAD_RESPONSE = "bad_response"
    TASK_FAILED = "task_failed"
    DOWNLOAD = "download"
    EXPIRED = "expired"  # the task's outputs are gone at the provider (retention, deleted)


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""


class UsageError(PipelineError):
    """The command line or the environment is wrong (missing key, bad flag)."""


class StateError(PipelineError):
    """The run state could not be read or written (a full disk, a database that refuses).

    ``location`` names where the state lives (never with a password)."""

    def __init__(self, message: str, *, location: str) -> None:
        self.location = location
        super().__init__(f"{location}: {message}")


@dataclass(frozen=True, slots=True)
class ManifestIssue:
    """One problem in a manifest: where it is and what is wrong."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ManifestError(PipelineError):
    """The manifest is invalid; ``issues`` lists every problem found (up to a limit)."""

    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class ProviderError(PipelineError):
    """A provider request failed.

    ``retryable`` says whether the same request may be sent again; ``code`` is the
    provider's own error code (e.g. ``1403`` or ``IMAGE_GENERATION_FAILED``) or one of
    the pipeline's (``timeout``, ``auth``, ``insufficient_credits``, ``network``...).
    """

    default_code: str = ErrorCode.PROVIDER_ERROR
    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        http_status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        job_id: str | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.http_status = http_status
        self.code = code if code is not None else self.default_code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.job_id = job_id
        parts = [provider]
        if http_status is not None:
            parts.append(f"HTTP {http_status}")
        if self.code:
            parts.append(self.code)
        super().__init__(f"{' '.join(parts)}: {message}")


class RateLimited(ProviderError):
    """HTTP 429. ``retry_after`` is the provider's wait in seconds, when it gave one."""

    default_code = ErrorCode.RATE_LIMITED
    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    default_code = ErrorCode.TIMEOUT
    default_retryable = True


class ProviderUnreachable(ProviderError):
    """The connection failed or was closed before a reply."""

    default_code = ErrorCode.NETWORK
    default_retryable = True


class AuthError(ProviderError):
    """The key was rejected (401) or the account may not do this (403)."""

    default_code = ErrorCode.AUTH


class InsufficientCredits(ProviderError):
    """The account has no balance left for this request."""

    default_code = ErrorCode.INSUFFICIENT_CREDITS


class OutcomeUnknown(ProviderError):
    """A submit request left this machine but no reply came back.

    The provider may or may not have created (and charged for) a task, so the submit must
    never be blindly resent: it goes through reconciliation instead.
    """

    default_code = ErrorCode.OUTCOME_UNKNOWN


class DownloadError(PipelineError):
    """An image could not be downloaded or did not pass its checks.

    ``retryable``: the same URL may work again (a network fault, a 5xx). ``stale``: this
    URL will not, but a fresh poll of the task may give one that does (refused with 403,
    404 or 410, as expired signed URLs are; or cut short again and again)."""

    def __init__(
        self, message: str, *, url: str, retryable: bool = True, stale: bool = False
    ) -> None:
        self.url = url
        self.retryable = retryable
        self.stale = stale
        super().__init__(message)


class StorageFailed(PipelineError):
    """The run's own storage refused a write that no retry fixes: a full disk or quota, a
    read-only file system, a permission, a bucket that refuses writes.

    Every other image would be refused too, so the run stops submitting and ends (exit
    3), keeping each paid task in its state, waiting for its download: a plain rerun
    downloads them once the storage is fixed. ``location``: the folder or bucket;
    ``reason``: why, in words."""

    retryable = False

    def __init__(self, message: str, *, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(message)


# What a file system says when it cannot take our writes at all (as opposed to one file).
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def storage_failure(exc: BaseException, location: str) -> StorageFailed | None:
    """``exc`` as the output's storage failing (see :class:`StorageFailed`), or None when
    it is not that: a full disk, a quota, a read-only or refused folder (also as the
    cause of a ``DownloadError``), a refused object store write."""
    if isinstance(exc, StorageFailed):
        return exc
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in STORAGE_ERRNOS:
            reason = seen.strerror or str(seen)
            where = seen.filename or location
            return StorageFailed(f"{where}: {reason}", location=location, reason=reason)
        seen = seen.__cause__
    return None


class BudgetExhausted(PipelineError):
    """Submitting the next job could take spend past the budget."""
