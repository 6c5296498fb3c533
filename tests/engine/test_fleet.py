"""Many runners, one batch, against a real PostgreSQL and the real emulator: leases and
takeover, a dead worker's unconfirmed submits, fleet-wide rate, tasks in flight and budget.

Workers here are concurrent ``pipeline.arun`` calls (each its own pool, worker row and
lanes) in real time; the chaos test with separate processes and kill -9 is in
``test_fleet_processes.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

import pipeline
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile, serve
from pipeline.engine._fleet import key_id
from pipeline.jobs import Job, JobParams
from pipeline.providers import create_adapter
from pipeline.store import StateLocation, open_store
from pipeline.store._postgres import PostgresStore

pytestmark = pytest.mark.anyio

KEYS = {"wavespeed": "fleet-test-key", "skills_video": "fleet-test-key"}
SLOW = EmulatorConfig(latency_s=0.4, latency_jitter=0.5, image_scale=0.0625)


def _manifest(
    prompts: int, *, rps: float = 50, concurrent: int = 3, providers: tuple[str, ...] = ()
) -> dict[str, Any]:
    limits = {"requests_per_second": rps, "max_concurrent": concurrent}
    # The emulator's account has no tier: say so (else Bronze's 2 images/min is assumed).
    wavespeed = {**limits, "images_per_minute": 100_000}
    return {
        "name": "fleet",
        "providers": {"wavespeed": wavespeed, "skills_video": {**limits, "usd_per_credit": 0.001}},
        "sweep": {"provider": list(providers or ("wavespeed", "skills_video"))},
        "prompts": [f"fleet prompt {i}" for i in range(prompts)],
    }


async def _workers(
    n: int, manifest: dict[str, Any], out: Path, url: str, server: EmulatorServer, **kw: Any
) -> list[pipeline.RunResult]:
    results: list[pipeline.RunResult] = []
    urls = {p: server.base_url for p in KEYS}

    async def one() -> None:
        results.append(
            await pipeline.arun(
                manifest, out=out, state=url, base_urls=urls, api_keys=KEYS, lease_s=5, **kw
            )
        )

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return results


def _submitted_prompts(server: EmulatorServer) -> Counter[tuple[str, str]]:
    """How many tasks the server created per (provider, prompt)."""
    state = server.state
    views = [state.task_view(t) for t in state.store.tasks(None)]
    return Counter((v["provider"], v["input"]["prompt"]) for v in views)


async def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql.encode())
        return await cur.fetchall()


@pytest.mark.parametrize("emulator_config", [SLOW])
async def test_three_workers_share_one_batch(
    emulator: EmulatorServer, tmp_path: Path, postgres_url: str
) -> None:
    """Three workers on one batch: each job submitted once, the work spread, every
    worker exits 0 with the whole batch completed, one consistent ledger."""
    results = await _workers(3, _manifest(12), tmp_path / "out", postgres_url, emulator)
    assert [r.exit_code for r in results] == [0, 0, 0]
    assert all(r.completed == 24 and r.pending == 0 for r in results)
    assert set(_submitted_prompts(emulator).values()) == {1}
    assert len(_submitted_prompts(emulator)) == 24
    assert emulator.stats().wavespeed.submits == 12
    assert emulator.stats().skills_video.submits == 12
    workers = await _query(postgres_url, "SELECT id FROM pipeline_workers")
    assert len(workers) == 3
    ledger = json.loads((tmp_path / "out" / "ledger.json").read_text())
    assert ledger["totals"]["completed"] == 24
    assert ledger["totals"]["cost_usd"] == pytest.approx(12 * 0.028 + 12 * 20 * 0.001)
    status = pipeline.status(tmp_path / "out", state=postgres_url)
    assert (status.completed, status.in_flight) == (24, 0)
    (row,) = await _query(
        postgres_url, "SELECT spent_usd, reserved_usd, reserved_credits FROM pipeline_budget"
    )
    assert row[0] == pytest.approx(ledger["totals"]["cost_usd"])
    assert abs(row[1]) < 1e-9
    assert abs(row[2]) < 1e-9
    assert await _query(postgres_url, "SELECT sum(in_flight) FROM pipeline_limits") == [(0,)]


async def test_a_silent_workers_jobs_are_taken_over_and_its_intents_reconciled(
    tmp_path: Path, postgres_url: str
) -> None:
    """A worker that claimed the batch, created two skills.video tasks whose replies it
    never recorded (intent), and went silent: once its lease has expired, another worker
    takes every job over, adopts both tasks from the provider's running list instead of
    submitting them again, and completes the batch."""
    manifest = _manifest(4, providers=("skills_video",))
    async with serve(EmulatorConfig(latency_s=4.0, image_scale=0.0625)) as server:
        batch = pipeline.load_manifest(manifest, out=tmp_path / "out")
        store = await open_store(
            StateLocation("postgres", postgres_url), name=batch.name, output=batch.output_dir
        )
        assert isinstance(store, PostgresStore)
        models = {"skills_video": "kling-ai/o3-image"}
        await store.sync_batch(batch.jobs, models)
        dead = store.fleet
        await dead.join(host="gone", pid=1, lease_s=1.0)
        assert len(await dead.claim([j.id for j in batch.jobs])) == 4
        key = KEYS["skills_video"]
        adapter = create_adapter("skills_video", api_key=key, base_url=server.base_url)
        for job in batch.jobs[:2]:
            assert await store.mark_intent(job.id)
            await adapter.submit(job)  # created at the provider; the reply is "lost"
        await adapter.aclose()
        await store.close()
        urls = {"skills_video": server.base_url}
        result = await pipeline.arun(
            manifest,
            out=tmp_path / "out",
            state=postgres_url,
            base_urls=urls,
            api_keys=KEYS,
            lease_s=1.0,  # looks for expired leases every 0.5 s: the tasks still run
        )
        assert (result.exit_code, result.completed) == (0, 4)
        assert server.stats().skills_video.submits == 4  # 2 by the dead worker, 2 new
        assert set(_submitted_prompts(server).values()) == {1}
    ledger = json.loads((tmp_path / "out" / "ledger.json").read_text())
    flags = {j["id"]: j.get("flags", []) for j in ledger["jobs"]}
    assert [flags[j.id] for j in batch.jobs[:2]] == [["reconciled"], ["reconciled"]]


async def test_tasks_a_dead_worker_left_holding_every_task_slot_are_taken_over(
    tmp_path: Path, postgres_url: str
) -> None:
    """A worker died with tasks at the provider holding all of its task slots (2 of 2),
    on the last jobs of the plan: the live worker's lane workers each claim a job of
    their own first and wait for a slot, so the takeover worker finds the dead one's
    tasks, works them in the slots they hold, and the batch completes, nothing sent
    twice and every slot given back."""
    manifest = _manifest(6, concurrent=2, providers=("skills_video",))
    async with serve(EmulatorConfig(latency_s=1.0, image_scale=0.0625)) as server:
        batch = pipeline.load_manifest(manifest, out=tmp_path / "out")
        store = await open_store(
            StateLocation("postgres", postgres_url), name=batch.name, output=batch.output_dir
        )
        assert isinstance(store, PostgresStore)
        await store.sync_batch(batch.jobs, {"skills_video": "kling-ai/o3-image"})
        dead = store.fleet
        await dead.join(host="gone", pid=1, lease_s=1.0)
        key = KEYS["skills_video"]
        await dead.limits("skills_video", key_id(key), 50)
        adapter = create_adapter("skills_video", api_key=key, base_url=server.base_url)
        last = batch.jobs[-2:]
        assert len(await dead.claim([j.id for j in last])) == 2
        for job in last:
            assert await dead.take_slot(job.id, "skills_video", key_id(key), 2)
            assert await store.mark_intent(job.id)
            task = await adapter.submit(job)
            await store.mark_submitted(job.id, task.remote_id, "2026-01-01T00:00:00Z", {})
        await adapter.aclose()
        await store.close()
        assert await _query(postgres_url, "SELECT sum(in_flight) FROM pipeline_limits") == [(2,)]
        with anyio.fail_after(60):
            result = await pipeline.arun(
                manifest,
                out=tmp_path / "out",
                state=postgres_url,
                base_urls={"skills_video": server.base_url},
                api_keys=KEYS,
                lease_s=1.0,
            )
        assert (result.exit_code, result.completed) == (0, 6)
        assert set(_submitted_prompts(server).values()) == {1}
        assert server.stats().skills_video.submits == 6  # 2 by the dead worker, 4 new
    assert await _query(postgres_url, "SELECT sum(in_flight) FROM pipeline_limits") == [(0,)]


async def test_a_lost_lease_fences_the_intent(postgres_url: str) -> None:
    """A worker whose lease expired and whose job another worker claimed cannot write
    that job's intent (so it never submits it): the claimer can."""
    job = Job(id="j", prompt_id="j", provider="wavespeed", prompt="p", params=JobParams())
    location = StateLocation("postgres", postgres_url)
    slow = await open_store(location, name="b", output="o")
    fast = await open_store(location, name="b", output="o")
    assert isinstance(slow, PostgresStore)
    assert isinstance(fast, PostgresStore)
    await slow.sync_batch([job], {"wavespeed": "m"})
    await slow.fleet.join(host="h", pid=1, lease_s=0.2)
    await fast.fleet.join(host="h", pid=2, lease_s=30)
    assert [r.id for r in await slow.fleet.claim(["j"])] == ["j"]
    assert await fast.fleet.claim(["j"]) == []  # held by a live worker
    await anyio.sleep(0.5)  # no heartbeat: the lease expires
    assert [r.id for r in await fast.fleet.claim(["j"])] == ["j"]
    assert not await slow.mark_intent("j")
    assert await fast.mark_intent("j")
    await slow.fleet.beat()  # a late heartbeat does not win the job back
    assert await slow.fleet.claim(["j"]) == []
    await slow.close()
    await fast.close()


async def test_the_fleet_keeps_the_servers_rate_limit(tmp_path: Path, postgres_url: str) -> None:
    """A server that allows 20 requests/s and three workers each configured at 20/s:
    together they never pass it (no 429), and every job completes."""
    config = EmulatorConfig(latency_s=0.2, image_scale=0.0625, faults=FaultProfile(max_rps=20))
    async with serve(config) as server:
        manifest = _manifest(12, rps=20, concurrent=4, providers=("skills_video",))
        results = await _workers(3, manifest, tmp_path / "out", postgres_url, server)
        stats = server.stats().skills_video
    assert [r.completed for r in results] == [12, 12, 12]
    assert stats.rate_limited == 0
    assert stats.submits == 12


async def test_the_fleet_keeps_the_providers_tasks_in_flight(
    tmp_path: Path, postgres_url: str
) -> None:
    """max_concurrent 2 for three workers: the provider never sees more than 2 tasks."""
    config = EmulatorConfig(latency_s=0.3, latency_jitter=0.5, image_scale=0.0625)
    async with serve(config) as server:
        manifest = _manifest(10, concurrent=2, providers=("wavespeed",))
        results = await _workers(3, manifest, tmp_path / "out", postgres_url, server)
        stats = server.stats().wavespeed
    assert [r.completed for r in results] == [10, 10, 10]
    assert stats.peak_in_flight == 2


async def test_three_workers_never_overshoot_a_budget(tmp_path: Path, postgres_url: str) -> None:
    """A $0.10 cap and $0.028 jobs: three workers together submit three jobs, spend at
    most the cap, and all stop with exit 3 and the jobs left pending."""
    manifest = {**_manifest(10, providers=("wavespeed",)), "budget": {"max_usd": 0.10}}
    async with serve(SLOW) as server:
        results = await _workers(3, manifest, tmp_path / "out", postgres_url, server)
        submits = server.stats().wavespeed.submits
    assert submits == 3
    assert [r.exit_code for r in results] == [3, 3, 3]
    assert all(r.cost_usd <= 0.10 and r.completed == 3 and r.pending == 7 for r in results)
    assert all("budget reached" in (r.aborted_reason or "") for r in results)


async def test_a_learned_price_is_shared_and_holds_a_credit_cap(
    tmp_path: Path, postgres_url: str
) -> None:
    """skills.video charges 4x the estimate (reported on submit) and the cap is 400
    credits: the fleet probes the price one job at a time, learns it for everyone, and
    three workers together never pass the cap."""
    config = EmulatorConfig(
        latency_s=0.2, image_scale=0.0625, credits_per_image={"1K": 80.0, "2K": 160.0}
    )
    manifest = {**_manifest(10, providers=("skills_video",)), "budget": {"max_credits": 400}}
    async with serve(config) as server:
        results = await _workers(3, manifest, tmp_path / "out", postgres_url, server)
        submits = server.stats().skills_video.submits
    assert submits * 80 <= 400
    assert all(r.credits <= 400 for r in results)
    assert all(r.exit_code == 3 for r in results)
