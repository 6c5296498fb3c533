"""The sqlite backend's own promises: one run at a time (a lock naming its holder, never
held by the dead), schema versions, and intents fsynced before their submit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from pipeline.errors import StateError
from pipeline.jobs import Job, JobParams
from pipeline.store import BatchInUse, StateLocation, open_store
from pipeline.store._sqlite import SqliteStore
from pipeline.store._sqlite_layout import SCHEMA, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

MODELS = {"wavespeed": "kling-image-o3"}
JOB = Job(id="a", prompt_id="a", provider="wavespeed", prompt="cat", params=JobParams())


def _location(tmp_path: Path) -> StateLocation:
    return StateLocation("sqlite", str(tmp_path / "state.db"))


async def test_a_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While one run holds the state, another gets BatchInUse with host, pid and since;
    once the first closes, the state is free again."""
    first = await open_store(_location(tmp_path), name="b", output="o")
    with pytest.raises(BatchInUse) as info:
        await open_store(_location(tmp_path), name="b", output="o")
    assert info.value.pid == os.getpid()
    assert f"pid {os.getpid()} on" in str(info.value)
    assert info.value.since
    await first.close()
    second = await open_store(_location(tmp_path), name="b", output="o")
    await second.close()


async def test_a_dead_holder_never_blocks_the_batch(tmp_path: Path) -> None:
    """A process that took the lock and was killed with SIGKILL leaves its details behind,
    not its lock: the next run takes the state over."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from pipeline.store._lock import acquire; "
        "acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    async with await anyio.open_process(
        [sys.executable, "-c", code, str(tmp_path / "state.db")], stderr=None
    ) as proc:
        assert proc.stdout is not None
        assert (await proc.stdout.receive()).strip() == b"held"
        with pytest.raises(BatchInUse) as info:
            await open_store(_location(tmp_path), name="b", output="o")
        assert info.value.pid == proc.pid
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    store = await open_store(_location(tmp_path), name="b", output="o")
    holder = json.loads((tmp_path / "state.db.lock").read_text())
    assert holder["pid"] == os.getpid()
    await store.close()


async def test_a_state_from_before_versions_is_upgraded(tmp_path: Path) -> None:
    """A state.db written before schema versions (same tables, user_version 0) opens, is
    stamped with the current version and keeps its jobs."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.execute(
            "INSERT INTO jobs (id, seq, provider, fingerprint, job, status) "
            "VALUES ('old', 0, 'wavespeed', 'f', '{}', 'completed')"
        )
    store = await SqliteStore.open(path)
    assert [r.id for r in await store.records()] == ["old"]
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A state written by a newer pipeline is never guessed at: StateError, and the file
    is left as it was."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StateError, match="newer pipeline"):
        await SqliteStore.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5


async def test_intents_commit_with_a_full_sync(tmp_path: Path) -> None:
    """The commit holding an intent runs with synchronous=FULL (fsynced before the submit
    is sent); the other writes with NORMAL."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.sync_batch([JOB], MODELS)

    async def synchronous() -> int:
        value: int = await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        return value

    await store.mark_intent("a")
    assert await synchronous() == 2  # FULL
    await store.mark_submitted("a", "r", "t", {})
    assert await synchronous() == 1  # NORMAL
    await store.close()
