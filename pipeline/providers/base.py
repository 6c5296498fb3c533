"""The one boundary between the scheduler and a provider's wire format.

An adapter turns a :class:`~pipeline.jobs.Job` into the provider's request, and the
provider's answers into :class:`TaskStatus`; it raises only :class:`ProviderError`
subclasses. It knows nothing of rate limits, retries, polling schedules or state.

Listing and cancelling are part of the protocol with defaults for APIs that lack them
(``running`` answers None: "cannot list"; ``cancel`` answers False: "cannot cancel"), so
an adapter subclassing :class:`ProviderAdapter` gets them for free.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    provider echoes it (None when the listing does not carry it)."""

    remote_id: str
    state: TaskState
    input: dict[str, Any] | None = field(default=None, hash=False)
    usage: dict[str, Any] = field(default_factory=dict, hash=False)


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
