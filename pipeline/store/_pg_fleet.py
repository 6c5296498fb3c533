"""What the processes of one batch share through PostgreSQL: leases, limits, the budget.

Leases (the idea of procrastinate's workers table and pgqueuer's stale-job pick-up): each
process registers a worker row and renews its ``heartbeat``; a job it works carries its
``worker_id``. A job is free when it has no worker, when its worker stopped, or when its
worker's heartbeat is older than the worker's ``lease_s``: then any process may claim it
(``SELECT ... FOR UPDATE SKIP LOCKED``, so claimers never wait for each other). Writing a
job's intent is fenced by the lease (``PostgresStore.mark_intent``): a process that lost
its lease cannot submit a job another process has taken over.

Limits per provider and key (``pipeline_limits``, shared by every batch on that key):
requests are spaced by GCRA on the database's clock (``tat``; a process takes a few slots
per round trip and waits for them locally), 429 pauses and slows the whole fleet, and
tasks in flight are counted by the jobs holding a slot (a trigger keeps the count). The
budget row follows the jobs' costs and reservations (trigger), and a reservation is taken
under its lock (``pipeline_reserve``), so no number of processes can overshoot a cap.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import psycopg

from pipeline.jobs import JobStatus
from pipeline.store._base import BudgetRow
from pipeline.store._pg_conn import COLUMNS, Conn, PgState, select_records
from pipeline.store._records import JobRecord, sort_rows

_FREE = (
    "(j.worker_id IS NULL OR j.worker_id = %(me)s OR w.id IS NULL OR w.stopped "
    "OR w.heartbeat < now() - make_interval(secs => w.lease_s))"
)
_OPEN = f"j.status NOT IN ('{JobStatus.COMPLETED}', '{JobStatus.FAILED}')"
_QUALIFIED = ", ".join(f"j.{c.strip()}" for c in COLUMNS.split(","))
T = TypeVar("T")


class PgFleet:
    """This process's share of one batch (``join`` first)."""

    def __init__(self, pg: PgState) -> None:
        self.pg = pg
        self.worker_id: int | None = None

    def __repr__(self) -> str:
        return f"PgFleet(batch {self.pg.batch_id}, worker {self.worker_id})"

    async def _one(self, sql: str, params: dict[str, object]) -> tuple[object, ...] | None:
        async def run(conn: Conn) -> tuple[object, ...] | None:
            cur = await conn.execute(sql.encode(), {"b": self.pg.batch_id, **params})
            row = await cur.fetchone() if cur.description else None
            await conn.commit()
            return row

        return await self._conn(run)

    async def _conn(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        try:
            async with self.pg.pool.connection() as conn:
                return await fn(conn)
        except psycopg.Error as exc:
            raise self.pg.error(exc) from exc

    # -- workers and leases ---------------------------------------------------------------

    async def join(self, *, host: str, pid: int, lease_s: float) -> int:
        row = await self._one(
            "INSERT INTO pipeline_workers (batch_id, host, pid, lease_s) "
            "VALUES (%(b)s, %(h)s, %(pid)s, %(l)s) RETURNING id",
            {"h": host, "pid": pid, "l": lease_s},
        )
        assert row is not None
        self.worker_id = int(str(row[0]))
        return self.worker_id

    async def beat(self) -> bool:
        """Renew the lease; False when this worker was declared gone (stopped)."""
        row = await self._one(
            "UPDATE pipeline_workers SET heartbeat = now() WHERE id = %(me)s AND NOT stopped "
            "RETURNING id",
            {"me": self.worker_id},
        )
        return row is not None

    async def leave(self) -> None:
        """Give every lease back (jobs still open become free at once) and stop."""
        await self._one(
            "WITH gone AS (UPDATE pipeline_workers SET stopped = true WHERE id = %(me)s) "
            "UPDATE pipeline_jobs SET worker_id = NULL "
            "WHERE batch_id = %(b)s AND worker_id = %(me)s",
            {"me": self.worker_id},
        )

    async def claim(self, ids: Sequence[str]) -> list[JobRecord]:
        """Lease those of ``ids`` that are free; their records as they are now."""
        if not ids:
            return []

        async def run(conn: Conn) -> list[JobRecord]:
            cur = await conn.execute(
                (
                    "WITH free AS (SELECT j.id FROM pipeline_jobs j "
                    "LEFT JOIN pipeline_workers w ON w.id = j.worker_id "
                    f"WHERE j.batch_id = %(b)s AND j.id = ANY(%(ids)s) AND {_FREE} "
                    "FOR UPDATE OF j SKIP LOCKED) "
                    "UPDATE pipeline_jobs j SET worker_id = %(me)s FROM free "
                    f"WHERE j.batch_id = %(b)s AND j.id = free.id RETURNING {_QUALIFIED}"
                ).encode(),
                {"b": self.pg.batch_id, "ids": list(ids), "me": self.worker_id},
            )
            rows = await cur.fetchall()
            await conn.commit()
            return list(map(JobRecord, sort_rows(rows)))

        return await self._conn(run)

    async def open_jobs(self, provider: str) -> tuple[list[JobRecord], int]:
        """The provider's jobs that are not settled (superseded ones left out): those free
        now, and how many live workers (this one included) hold."""

        async def run(conn: Conn) -> tuple[list[JobRecord], int]:
            # Free for the taking: nobody's, or a stopped or silent worker's (not ours:
            # ours are being worked here, and count as held).
            cur = await conn.execute(
                (
                    f"SELECT {_QUALIFIED}, {_FREE} AND j.worker_id IS DISTINCT FROM %(me)s "
                    "FROM pipeline_jobs j "
                    "LEFT JOIN pipeline_workers w ON w.id = j.worker_id "
                    f"WHERE j.batch_id = %(b)s AND j.provider = %(p)s AND {_OPEN} "
                    "AND j.flags NOT LIKE '%%\"superseded\"%%'"
                ).encode(),
                {"b": self.pg.batch_id, "p": provider, "me": self.worker_id},
            )
            rows = await cur.fetchall()
            await conn.commit()
            free = [r[:-1] for r in rows if r[-1]]
            return list(map(JobRecord, sort_rows(free))), len(rows) - len(free)

        return await self._conn(run)

    async def stale_slots(self, provider: str) -> list[str]:
        """Ids of the provider's jobs that hold a task slot for a worker that is gone
        (stopped, or its lease expired): tasks at the provider that nobody watches."""

        async def run(conn: Conn) -> list[str]:
            cur = await conn.execute(
                (
                    "SELECT j.id FROM pipeline_jobs j "
                    "LEFT JOIN pipeline_workers w ON w.id = j.worker_id "
                    "WHERE j.batch_id = %(b)s AND j.provider = %(p)s AND j.holds_slot "
                    f"AND j.worker_id IS DISTINCT FROM %(me)s AND {_FREE} ORDER BY j.seq"
                ).encode(),
                {"b": self.pg.batch_id, "p": provider, "me": self.worker_id},
            )
            rows = await cur.fetchall()
            await conn.commit()
            return [str(row[0]) for row in rows]

        return await self._conn(run)

    async def records(self) -> list[JobRecord]:
        async def run(conn: Conn) -> list[JobRecord]:
            return await select_records(conn, self.pg.batch_id)

        return await self._conn(run)

    # -- request rate and tasks in flight ---------------------------------------------------

    async def limits(self, provider: str, key_id: str, rate: float) -> None:
        """Make sure the provider's shared limits row exists (``rate``: as configured)."""
        await self._one(
            "INSERT INTO pipeline_limits (provider, key_id, configured, rate) "
            "VALUES (%(p)s, %(k)s, %(r)s, %(r)s) ON CONFLICT (provider, key_id) DO UPDATE "
            "SET configured = EXCLUDED.configured, "
            "rate = LEAST(pipeline_limits.rate, EXCLUDED.configured)",
            {"p": provider, "k": key_id, "r": rate},
        )

    async def rate_slots(self, provider: str, key_id: str, n: int) -> tuple[float, float]:
        """Take ``n`` request slots: (seconds from now to the first, the interval)."""
        row = await self._one(
            "UPDATE pipeline_limits l SET tat = GREATEST(l.tat, t.now, l.paused_until) "
            "+ %(n)s / l.rate FROM (SELECT extract(epoch FROM clock_timestamp())::float8 "
            "AS now) t WHERE l.provider = %(p)s AND l.key_id = %(k)s "
            "RETURNING l.tat - %(n)s / l.rate - t.now, 1.0 / l.rate",
            {"p": provider, "k": key_id, "n": n},
        )
        assert row is not None
        return float(str(row[0])), float(str(row[1]))

    async def rate_pause(
        self, provider: str, key_id: str, seconds: float, decrease: float, floor: float
    ) -> None:
        """A 429: hold every process's requests for ``seconds`` and slow the rate down."""
        await self._one(
            "UPDATE pipeline_limits SET paused_until = GREATEST(paused_until, "
            "extract(epoch FROM clock_timestamp())::float8 + %(s)s), "
            "rate = GREATEST(configured * %(floor)s, rate * %(d)s) "
            "WHERE provider = %(p)s AND key_id = %(k)s",
            {"p": provider, "k": key_id, "s": seconds, "d": decrease, "floor": floor},
        )

    async def rate_recover(self, provider: str, key_id: str, step: float) -> None:
        """Sustained success: grow the rate back by ``step`` x the configured one."""
        await self._one(
            "UPDATE pipeline_limits SET rate = LEAST(configured, rate + configured * %(s)s) "
            "WHERE provider = %(p)s AND key_id = %(k)s",
            {"p": provider, "k": key_id, "s": step},
        )

    async def take_slot(self, job_id: str, provider: str, key_id: str, limit: int) -> bool:
        row = await self._one(
            "SELECT pipeline_take_slot(%(b)s, %(id)s, %(p)s, %(k)s, %(l)s)",
            {"id": job_id, "p": provider, "k": key_id, "l": limit},
        )
        return bool(row and row[0])

    async def give_slot(self, job_id: str) -> None:
        await self._one(
            "UPDATE pipeline_jobs SET holds_slot = false "
            "WHERE batch_id = %(b)s AND id = %(id)s AND holds_slot",
            {"id": job_id},
        )

    # -- budget ---------------------------------------------------------------------------

    async def reserve(
        self,
        job_id: str,
        provider: str,
        base: tuple[float, float],
        caps: tuple[float | None, float | None],
        *,
        probe: bool,
    ) -> str:
        """Reserve a job's estimate: ``ok``, ``budget`` (a cap would be passed), ``wait``
        (the provider's price is being probed by another job) or ``gone``."""
        row = await self._one(
            "SELECT pipeline_reserve(%(b)s, %(id)s, %(p)s, %(u)s, %(c)s, %(cu)s, %(cc)s, %(pr)s)",
            {
                "id": job_id,
                "p": provider,
                "u": base[0],
                "c": base[1],
                "cu": caps[0],
                "cc": caps[1],
                "pr": probe,
            },
        )
        return str(row[0]) if row else "gone"

    async def raise_reservation(self, job_id: str, usd: float, credits: float) -> None:
        """A reply reported the real charge: the job holds at least that."""
        await self._one(
            "UPDATE pipeline_jobs SET reserved_usd = GREATEST(reserved_usd, %(u)s), "
            "reserved_credits = GREATEST(reserved_credits, %(c)s) "
            "WHERE batch_id = %(b)s AND id = %(id)s",
            {"id": job_id, "u": usd, "c": credits},
        )

    async def release_reservation(self, job_id: str) -> None:
        await self._one(
            "UPDATE pipeline_jobs SET reserved_usd = 0, reserved_credits = 0 "
            "WHERE batch_id = %(b)s AND id = %(id)s",
            {"id": job_id},
        )

    async def learn_scale(self, provider: str, ratio: float) -> None:
        """The provider charges ``ratio`` x its estimates (at least): remember the most."""
        await self._one(
            "UPDATE pipeline_budget SET scales = jsonb_set(scales::jsonb, ARRAY[%(p)s], "
            "to_jsonb(GREATEST(COALESCE((scales::jsonb ->> %(p)s)::float8, 1.0), %(r)s)))::text "
            "WHERE batch_id = %(b)s",
            {"p": provider, "r": ratio},
        )

    async def budget(self) -> BudgetRow:
        row = await self._one(
            "SELECT spent_usd, spent_credits, reserved_usd, reserved_credits, scales "
            "FROM pipeline_budget WHERE batch_id = %(b)s",
            {},
        )
        assert row is not None
        scales = {str(k): float(v) for k, v in json.loads(str(row[4])).items()}
        spent_usd, spent_credits, reserved_usd, reserved_credits = (float(str(x)) for x in row[:4])
        return BudgetRow(spent_usd, spent_credits, reserved_usd, reserved_credits, scales)
