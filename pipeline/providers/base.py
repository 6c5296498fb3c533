"""The one boundary between the scheduler and a provider's wire format.

An adapter turns a :class:`~pipeline.jobs.Job` into the provider's request, and the
provider's answers into :class:`TaskStatus`; it raises only :class:`ProviderError`
subclasses. It knows nothing of rate limits, retries, polling schedules or state.

Listing, cancelling and streaming are part of the protocol with defaults for APIs that
lack them (``running`` and ``recent`` answer None: "cannot list"; ``cancel`` answers
False: "cannot cancel"; ``stream`` raises ``NotImplementedError``), so an adapter
subclassing :class:`ProviderAdapter` gets them for free. The spec says which an API has
(``lists_unfinished``, ``lists_recent``, ``cancels``, ``streams``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.errors import ProviderError
from pipeline.jobs import Job
from pipeline.providers.specs import Cost, ProviderSpec


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.COMPLETED, TaskState.FAILED)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One generated image as the provider describes it (not yet downloaded)."""

    url: str
    width: int | None = None
    height: int | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A provider task as last seen: after submit, or after a poll.

    ``usage`` is the provider's own usage object, verbatim (``{}`` when it sends none).
    ``error_code``/``error_message`` are set when ``state`` is FAILED; ``retryable``
    says whether running the job again could succeed (e.g. an internal error).
    """

    remote_id: str
    state: TaskState
    images: tuple[ImageRef, ...] = ()
    usage: dict[str, Any] = field(default_factory=dict, hash=False)
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class ListedTask:
    """A task as the provider lists it. ``input``: what the submit asked for, as the
    provider echoes it (None when the listing does not carry it). ``created_at``: when
    the provider created it (epoch seconds, UTC), ``model``: the provider's model id,
    ``images``: its outputs as listed (URLs valid as of the listing), each where the
    listing carries them."""

    remote_id: str
    state: TaskState
    input: dict[str, Any] | None = field(default=None, hash=False)
    usage: dict[str, Any] = field(default_factory=dict, hash=False)
    created_at: float | None = None
    model: str | None = None
    images: tuple[ImageRef, ...] = ()


class StreamDropped(ProviderError):
    """A streamed submit lost its stream after the provider had named the task.

    The task exists (and is paid for): poll ``remote_id`` for the rest, never submit the
    job again. (A stream lost *before* the first frame is an ``OutcomeUnknown``: the id is
    not known.) Not retryable, on purpose: retrying would mean a second submit.
    """

    default_code = "stream_dropped"

    def __init__(self, message: str, *, remote_id: str, **kw: object) -> None:
        self.remote_id = remote_id
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ProviderAdapter(Protocol):
    """Submit / poll / list / cancel / cost for one provider. Raises ``ProviderError``
    subclasses only."""

    spec: ProviderSpec

    async def submit(self, job: Job) -> TaskStatus:
        """Create the task. Raises ``ProviderError`` (``retryable`` only when the request
        provably never reached the provider)."""
        ...

    async def poll(self, remote_id: str) -> TaskStatus:
        """Fetch the task's current status."""
        ...

    async def running(self, limit: int = 100) -> list[ListedTask] | None:
        """The provider's unfinished tasks (at most ``limit``), or None when the API does
        not list them."""
        return None

    async def recent(self, *, since: float, limit: int = 100) -> list[ListedTask] | None:
        """Tasks created at or after ``since`` (epoch seconds, UTC), newest first, any
        status (at most ``limit``); None when the API cannot list them."""
        return None

    def stream(self, job: Job) -> AsyncGenerator[TaskStatus, None]:
        """Submit ``job`` over the provider's streaming variant and yield a status per
        change, the first one queued with the ``remote_id``, the last one terminal.

        Use it as ``async with contextlib.aclosing(adapter.stream(job)) as statuses``.
        Errors before the stream starts are those of ``submit``; a stream lost after the
        id is known raises :class:`StreamDropped` (poll it). Raises
        ``NotImplementedError`` (at the call) when the API has no streaming variant
        (``spec.streams`` is False).
        """
        # (Not a bare raise: type checkers would take the default for an abstract method.)
        message = f"{self.spec.name} has no streaming submit"
        raise NotImplementedError(message)

    def matches(self, task: ListedTask, job: Job) -> bool:
        """Whether ``task`` could be the one ``job``'s submit created (nothing it echoes
        contradicts the job)."""
        return False

    async def cancel(self, remote_id: str) -> bool:
        """Ask the provider to stop (or delete) the task; False when the API cannot."""
        return False

    def cost(self, job: Job, status: TaskStatus) -> Cost:
        """What the finished task cost, by the provider's rule."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
