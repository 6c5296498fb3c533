"""The run-state protocol: what the engine, the ledger and ``status`` ask of a backend.

The write-ahead protocol
------------------------
Each job moves ``pending -> intent -> submitted -> completed | failed``
(:class:`~pipeline.jobs.JobStatus`):

- ``intent`` is committed *before* the submit request is sent;
- ``submitted`` (with the provider's remote id) is committed as soon as the submit
  returns, before anything else happens;
- ``completed`` is committed only after every image is stored and verified.

So after a crash: ``submitted`` jobs are polled by remote id, never resubmitted; ``intent``
jobs have an unknown outcome (the process may have died after the provider accepted the
request) and are reconciled before they may be sent again; ``completed`` jobs are
skipped while their files are valid. ledger.json is always derived from this state.

Every write method returns only once its change is durable (committed), and the writes
of one job are awaited one after the other, so the order above holds on every backend.
Records come back as :class:`~pipeline.store._records.JobRecord` in ``seq`` order.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.jobs import Job
from pipeline.store._records import DoneRow, JobRecord, TallyRow

Counters = dict[str, tuple[int, int]]  # provider -> (requests, rate_limited)


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """A batch's shared budget: what its jobs cost, what they hold in reservations, and
    the learned price scale per provider (actual / estimated)."""

    spent_usd: float
    spent_credits: float
    reserved_usd: float
    reserved_credits: float
    scales: dict[str, float]


class Fleet(Protocol):
    """How the processes of one batch share it (a store that many processes may work at
    once offers one; see ``pipeline.store._pg_fleet`` for the protocol's rules). Every
    method is one round trip to the shared state."""

    worker_id: int | None

    async def join(self, *, host: str, pid: int, lease_s: float) -> int:
        """Register this process; its leases last ``lease_s`` past each heartbeat."""
        ...

    async def beat(self) -> bool:
        """Renew the lease; False when this worker was declared gone."""
        ...

    async def leave(self) -> None:
        """Give every lease back and stop."""
        ...

    async def claim(self, ids: Sequence[str]) -> list[JobRecord]:
        """Lease those of ``ids`` that are free; their records as they are now."""
        ...

    async def open_jobs(self, provider: str) -> tuple[list[JobRecord], int]:
        """The provider's unsettled jobs: those free now, and how many live workers hold."""
        ...

    async def stale_slots(self, provider: str) -> list[str]:
        """Ids of the provider's jobs holding a task slot for a worker that is gone."""
        ...

    async def limits(self, provider: str, key_id: str, rate: float) -> None: ...

    async def rate_slots(self, provider: str, key_id: str, n: int) -> tuple[float, float]:
        """Take ``n`` request slots: (seconds from now to the first, the interval)."""
        ...

    async def rate_pause(
        self, provider: str, key_id: str, seconds: float, decrease: float, floor: float
    ) -> None: ...

    async def rate_recover(self, provider: str, key_id: str, step: float) -> None: ...

    async def take_slot(self, job_id: str, provider: str, key_id: str, limit: int) -> bool: ...

    async def give_slot(self, job_id: str) -> None: ...

    async def reserve(
        self,
        job_id: str,
        provider: str,
        base: tuple[float, float],
        caps: tuple[float | None, float | None],
        *,
        probe: bool,
    ) -> str:
        """``ok``, ``budget`` (a cap would be passed), ``wait`` (a price probe is under
        way) or ``gone``."""
        ...

    async def raise_reservation(self, job_id: str, usd: float, credits: float) -> None: ...

    async def release_reservation(self, job_id: str) -> None: ...

    async def learn_scale(self, provider: str, ratio: float) -> None: ...

    async def budget(self) -> BudgetRow: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole state at one moment, as a reader in another process sees it."""

    meta: dict[str, str]
    records: list[JobRecord]
    counters: Counters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Summary:
    """A batch's counts at one moment, as a reader in another process sees them: its
    tally, and the failed jobs of the batch, (id, error as stored) each in ``seq``
    order (``pipeline status`` groups them by code)."""

    meta: dict[str, str]
    tally: list[TallyRow]
    counters: Counters
    failed: list[tuple[str, str]]


class StateView(Protocol):
    """The state at one moment (one read transaction), for writing a ledger beside a run
    that goes on writing: ``RunStore.reading()`` opens one."""

    async def tally(self) -> list[TallyRow]: ...

    async def counters(self) -> Counters: ...

    async def failed(self) -> list[tuple[str, str]]:
        """The batch's failed jobs, (id, error as stored) each in ``seq`` order."""
        ...

    def chunks(self, size: int) -> Generator[list[JobRecord], None, None]:
        """Every record in ``seq`` order, ``size`` at a time, never all at once. Iterated
        in a worker thread (``pipeline._threads``), not on the event loop, and closed
        there when left before its end (a PostgreSQL cursor closes through the loop)."""
        ...

    def done(self, size: int) -> Generator[list[DoneRow], None, None]:
        """The completed jobs (archived ones included), ``size`` at a time, in no set
        order; iterated in a worker thread, as ``chunks``."""
        ...

    async def records_of(self, ids: Sequence[str]) -> list[JobRecord]:
        """The records of these ids (those that exist), in ``seq`` order."""
        ...


class RunStore(Protocol):
    """The durable state of one batch. Open one with :func:`pipeline.store.open_store`."""

    @property
    def location(self) -> str:
        """Where the state lives, for messages (never with a password)."""
        ...

    @property
    def fleet(self) -> Fleet | None:
        """The sharing of this batch with other processes (None: this process alone)."""
        ...

    @property
    def writes(self) -> int:
        """How many changes this store has committed (two readings tell whether anything
        changed in between)."""
        ...

    async def close(self) -> None: ...

    async def get_meta(self) -> dict[str, str]: ...

    async def set_meta(self, values: Mapping[str, str]) -> None: ...

    async def sync_batch(
        self, jobs: Sequence[Job], models: Mapping[str, str], *, all_rows: bool = True
    ) -> dict[str, JobRecord]:
        """Bring the stored jobs in line with ``jobs`` (``models``: provider -> model
        name) and return every record keyed by id, in ``seq`` order; without
        ``all_rows``, the rows a run needs: neither the plain pending jobs of the batch
        (never sent, nothing paid, no images: a job without a record is one), so a new
        batch of a million jobs reads back nothing, nor the completed ones (a resume
        reads those a chunk at a time, ``StateView.done``); and without what only the ledger
        shows (it reads its own rows): the job document, usage, fingerprint, completion
        time, latency and attempts are blank (``""``, ``"{}"``, ``None``, ``0``).

        New jobs are inserted; a known id whose fingerprint changed is archived under
        ``<id>~<old fingerprint>`` flagged ``superseded`` and starts afresh; an id edited
        back gets its archived row back; a job no longer in the manifest is flagged
        ``superseded`` (and loses the flag if it comes back)."""
        ...

    async def insert_new(
        self, jobs: Sequence[Job], models: Mapping[str, str], start: int, stop: int
    ) -> bool:
        """Store ``jobs[start:stop]`` as new pending rows (``seq``: their index in
        ``jobs``) in one transaction, into a state that holds exactly ``jobs[:start]``,
        stored by earlier calls (nothing, for ``start`` 0): a new batch is stored in
        parts, so that a run can send its first jobs while the rest are stored. The call
        that stores the last job notes the jobs as synced (the next ``sync_batch`` of
        the same jobs compares nothing). False, with nothing done, when the state holds
        anything else (``sync_batch`` is then the way), or when the backend stores a
        batch only whole (PostgreSQL: other processes may be syncing the same batch)."""
        ...

    async def records(self) -> list[JobRecord]: ...

    async def tally(self) -> list[TallyRow]:
        """The batch's counts, grouped (every row, archived ones included)."""
        ...

    def reading(self) -> AbstractAsyncContextManager[StateView]:
        """A view of the state as it is now, kept while the context lasts (writers go
        on). Raises ``StateError``."""
        ...

    async def mark_intent(self, job_id: str, at: str | None = None) -> bool:
        """Committed before the submit request is sent (counts an attempt; ``at``, the
        time, stands as ``submitted_at`` until the reply says). False: this process no
        longer holds the job's lease (another took it over): do not submit."""
        ...

    async def mark_submitted(
        self, job_id: str, remote_id: str, at: str, usage: Mapping[str, Any]
    ) -> None:
        """Committed as soon as the submit returns, before anything else happens."""
        ...

    async def mark_completed(
        self,
        job_id: str,
        *,
        at: str,
        latency_s: float | None,
        images: Sequence[Mapping[str, Any]],
        cost: Mapping[str, Any],
        usage: Mapping[str, Any],
    ) -> None:
        """Committed only once every image is stored and verified."""
        ...

    async def mark_failed(
        self,
        job_id: str,
        *,
        at: str,
        error: Mapping[str, Any],
        cost: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def set_images(self, job_id: str, images: Sequence[Mapping[str, Any]]) -> None: ...

    async def note_error(self, job_id: str, error: Mapping[str, Any]) -> None:
        """Record an error without changing the job's status."""
        ...

    async def add_flag(self, job_id: str, flag: str) -> None:
        """Add ``flag`` to the job's flags (once)."""
        ...

    async def add_duplicate_cost(
        self, job_id: str, usd: float, credits: float, tasks: Sequence[str] = ()
    ) -> None:
        """Count the estimated cost of a submit that may have been charged twice (and name
        the provider's ``tasks`` that could be the first one)."""
        ...

    async def add_counters(self, provider: str, requests: int, rate_limited: int) -> None:
        """Add to the provider's request counters (deltas)."""
        ...

    async def counters(self) -> Counters: ...
