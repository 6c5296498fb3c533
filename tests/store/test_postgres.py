"""The PostgreSQL backend's own promises against a real server: the schema is created and
upgraded by the product, a newer one is refused, connection problems are clear errors
that never show the password, and batches share a database without mixing."""

from __future__ import annotations

import psycopg
import pytest

from pipeline.errors import StateError
from pipeline.jobs import Job, JobParams
from pipeline.store import StateLocation, open_store, read_state, redact_url
from pipeline.store._pg_schema import SCHEMA_VERSION, migrate

pytestmark = pytest.mark.anyio

MODELS = {"wavespeed": "kling-image-o3"}
SECRET = "s3cr3t-pw-canary"


def _job(job_id: str) -> Job:
    return Job(id=job_id, prompt_id=job_id, provider="wavespeed", prompt=job_id, params=JobParams())


async def test_an_older_schema_is_upgraded_with_its_data(postgres_url: str) -> None:
    """A database at schema 1 with a batch in it is upgraded to the current schema on open,
    its jobs intact."""
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        assert await migrate(conn, "db", upto=1) == 1
        await conn.execute("INSERT INTO pipeline_batches (name, output) VALUES ('b', 'o')")
        await conn.execute(
            "INSERT INTO pipeline_jobs (batch_id, id, seq, provider, fingerprint, job) "
            "SELECT id, 'old', 0, 'wavespeed', 'f', '{}' FROM pipeline_batches"
        )
        await conn.commit()
    store = await open_store(StateLocation("postgres", postgres_url), name="b", output="o")
    assert [r.id for r in await store.records()] == ["old"]
    await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT version FROM pipeline_schema")
        assert await cur.fetchone() == (SCHEMA_VERSION,)


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    """A schema written by a newer pipeline: StateError, nothing changed."""
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        await migrate(conn, "db")
        await conn.execute("UPDATE pipeline_schema SET version = 99")
        await conn.commit()
    with pytest.raises(StateError, match="newer pipeline"):
        await open_store(StateLocation("postgres", postgres_url), name="b", output="o")


async def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    """A closed port: StateError naming the database, its password masked."""
    url = f"postgresql://pipeline:{SECRET}@127.0.0.1:9/batches"
    location = StateLocation("postgres", url)
    with pytest.raises(StateError) as info:
        await open_store(location, name="b", output="o")
    assert "cannot connect" in str(info.value)
    assert "127.0.0.1:9" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(location)
    assert SECRET not in str(location)


async def test_wrong_credentials_are_a_clear_error(postgres_url: str) -> None:
    """A role the server does not know: StateError, the password never shown."""
    url = postgres_url.replace("postgres:@", f"nobody:{SECRET}@")
    with pytest.raises(StateError) as info:
        await open_store(StateLocation("postgres", url), name="b", output="o")
    assert "nobody" in str(info.value)
    assert SECRET not in str(info.value)


def test_redaction_keeps_everything_but_the_password() -> None:
    """User, host, port, database and query survive; the password does not."""
    url = f"postgresql://u:{SECRET}@db.example:5433/name?sslmode=require"
    assert redact_url(url) == "postgresql://u:***@db.example:5433/name?sslmode=require"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_batches_share_a_database_apart(postgres_url: str) -> None:
    """Two batches (other names or outputs) in one database see only their own jobs; the
    state of an output is found by it, and an unknown output is an error."""
    location = StateLocation("postgres", postgres_url)
    first = await open_store(location, name="one", output="out/one")
    second = await open_store(location, name="two", output="out/two")
    await first.sync_batch([_job("a"), _job("b")], MODELS)
    await second.sync_batch([_job("a")], MODELS)
    await second.mark_intent("a")
    assert [r.row.status for r in await first.records()] == ["pending", "pending"]
    assert [r.row.status for r in await second.records()] == ["intent"]
    await first.close()
    await second.close()
    assert [r.id for r in read_state(location, "out/one").records] == ["a", "b"]
    with pytest.raises(Exception, match="no batch with output"):
        read_state(location, "out/none")
