"""The library front door: run / arun with manifests as paths or mappings, the records
they return, the errors they raise, and a call that changes nothing process-wide."""

from __future__ import annotations

import gc
import json
import logging
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import stamina

import pipeline
from pipeline.clock import VirtualClock
from pipeline.emulator import EmulatorConfig, EmulatorServer, FaultProfile

ROOT = Path(__file__).resolve().parents[1]
FAST = {"requests_per_second": 50, "max_concurrent": 4, "usd_per_credit": 0.001}
# The emulator's account has no tier: say so (else Bronze's 2 images/min is assumed).
WAVESPEED = {"requests_per_second": 50, "max_concurrent": 4, "images_per_minute": 100_000}


def _manifest(name: str = "lib", prompts: list[Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "providers": {"wavespeed": WAVESPEED, "skills_video": FAST},
        "sweep": {"provider": ["wavespeed", "skills_video"]},
        "prompts": prompts or ["a red fox", "a blue whale"],
    }


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_readme_examples_run(tmp_path: Path) -> None:
    """Every Python example under "Use it from Python" runs as written, and prints what
    its comments say."""
    blocks = _python_blocks("Use it from Python")
    assert len(blocks) == 2
    outputs = []
    for block in blocks:
        done = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split("\n"))
    assert outputs[0][:2] == ["2 0.056 0", "2"]
    assert json.loads((tmp_path / "out/hello/ledger.json").read_text())["totals"]["completed"] == 2
    assert (tmp_path / "out/ab/ledger.json").is_file()


@pytest.mark.anyio
async def test_arun_a_mapping_with_a_prompts_file(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A mapping manifest; its prompts_file is found in base_dir; the result carries the
    ledger's totals and the CLI's exit code."""
    (tmp_path / "more.csv").write_text("id,prompt\nowl,an owl at night\n")
    manifest = {**_manifest(), "prompts_file": "more.csv"}
    result = await pipeline.arun(
        manifest,
        out=tmp_path / "out",
        base_dir=tmp_path,
        base_urls={"wavespeed": emulator.base_url, "skills_video": emulator.base_url},
        api_keys={"wavespeed": "k", "skills_video": "k"},
        clock=clock,
    )
    assert isinstance(result, pipeline.RunResult)
    assert (result.name, result.jobs, result.completed, result.failed) == ("lib", 6, 6, 0)
    assert (result.pending, result.images, result.exit_code) == (0, 6, 0)
    assert result.cost_usd == pytest.approx(3 * 0.028 + 3 * 20 * 0.001)
    assert result.credits == 60
    assert not result.interrupted
    assert result.aborted_reason is None
    assert result.ledger_path == str(tmp_path / "out" / "ledger.json")
    ledger = json.loads(await anyio.Path(result.ledger_path).read_text())
    assert ledger["totals"]["completed"] == result.completed
    assert {j["prompt_id"] for j in ledger["jobs"]} == {"p1", "p2", "owl"}
    with pytest.raises(AttributeError):
        result.completed = 0  # type: ignore[misc]
    status = pipeline.status(tmp_path / "out")
    assert (status.completed, status.jobs, status["totals"]) == (6, 6, ledger["totals"])


@pytest.mark.anyio
async def test_an_aborted_run_says_why(
    emulator: EmulatorServer, tmp_path: Path, clock: VirtualClock
) -> None:
    """A budget cap: exit code 3 and the reason, the jobs left pending."""
    manifest = {**_manifest(prompts=[f"p{i}" for i in range(5)]), "budget": {"max_usd": 0.06}}
    manifest["sweep"] = {"provider": ["wavespeed"]}
    result = await pipeline.arun(
        manifest,
        out=tmp_path,
        base_urls={"wavespeed": emulator.base_url},
        api_keys={"wavespeed": "k"},
        clock=clock,
    )
    assert (result.exit_code, result.completed, result.pending) == (3, 2, 3)
    assert result.aborted_reason is not None
    assert "budget reached" in result.aborted_reason


def test_bad_mapping_raises_manifest_error_naming_fields(tmp_path: Path) -> None:
    """Every problem of a mapping, with its field (and no line), before anything is sent."""
    bad = {"name": "bad name!", "prompts": [{"prompt": "x", "resolution": "8k"}]}
    with pytest.raises(pipeline.ManifestError) as info:
        pipeline.run(bad, out=tmp_path, emulate=True)
    issues = {(i.path, i.line, i.field) for i in info.value.issues}
    assert ("<mapping>", None, "name") in issues
    assert ("<mapping>", None, "prompts[0].resolution") in issues
    assert not (tmp_path / "state.db").exists()


def test_missing_key_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key in the environment and no emulator: UsageError, nothing written."""
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with pytest.raises(pipeline.UsageError, match="WAVESPEED_API_KEY"):
        pipeline.run({"name": "n", "prompts": ["p"]}, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(pipeline.UsageError, match="max_usd"):
        pipeline.run({"name": "n", "prompts": ["p"]}, out=tmp_path / "o", max_usd=0)


def test_plan_and_load_manifest_send_nothing() -> None:
    """plan() counts and prices a mapping; load_manifest() gives the Batch."""
    manifest = _manifest(prompts=["a", "b", "c"])
    batch = pipeline.load_manifest(manifest, out="somewhere")
    assert isinstance(batch, pipeline.Batch)
    assert (len(batch.jobs), batch.output_dir) == (6, "somewhere")
    plan = pipeline.plan(manifest)
    assert (plan.total.jobs, plan.total.images) == (6, 6)
    assert plan.providers["wavespeed"].usd == pytest.approx(3 * 0.028)


def _process_state() -> dict[str, Any]:
    root = logging.getLogger()
    ours = logging.getLogger("pipeline")
    return {
        "signals": (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)),
        "root": (root.level, list(root.handlers)),
        "pipeline": (ours.level, list(ours.handlers), ours.propagate, ours.disabled),
        "stamina_hooks": stamina.instrumentation.get_on_retry_hooks(),
        "stamina_testing": stamina.is_testing(),
        "gc": (gc.isenabled(), gc.get_freeze_count()),
    }


def test_a_run_changes_nothing_process_wide(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Signals, logging, stamina's globals and the collector are as they were, and nothing
    is printed, even when requests fail and are retried; run.log has the retries."""
    before = _process_state()
    faulty = EmulatorConfig(latency_s=0.0, image_scale=0.0625, faults=FaultProfile(poll_5xx=0.3))
    result = pipeline.run(_manifest(), out=tmp_path, emulate=faulty)
    assert result.exit_code == 0
    assert _process_state() == before
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert "finished: 4 completed" in (tmp_path / "run.log").read_text()


def test_records_reach_an_application_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An application that listens on the ``pipeline`` logger gets the run's records."""
    with caplog.at_level(logging.INFO, logger="pipeline"):
        pipeline.run(_manifest(), out=tmp_path, emulate=EmulatorConfig(latency_s=0.0))
    assert any("finished: 4 completed" in r.getMessage() for r in caplog.records)


def test_progress_prints_only_when_asked(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """progress=True: progress (here the emulator banner) goes to stderr, never stdout."""
    pipeline.run(_manifest(), out=tmp_path, emulate=EmulatorConfig(latency_s=0.0), progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "emulator: serving both providers at http://127.0.0.1:" in err


@pytest.mark.anyio
async def test_cancelling_arun_keeps_the_state_for_a_resume(tmp_path: Path) -> None:
    """A cancelled arun leaves its state committed; the next run finishes the batch
    without paying for anything twice."""
    manifest = _manifest(prompts=[f"slow {i}" for i in range(4)])
    async with pipeline.emulated(latency_s=0.3) as url:
        urls = {"wavespeed": url, "skills_video": url}
        keys = {"wavespeed": "k", "skills_video": "k"}
        with anyio.move_on_after(0.5):
            await pipeline.arun(manifest, out=tmp_path, base_urls=urls, api_keys=keys)
        partial = pipeline.status(tmp_path)
        assert partial.jobs == 8
        assert partial.completed < 8
        result = await pipeline.arun(manifest, out=tmp_path, base_urls=urls, api_keys=keys)
    assert result.completed == 8
    ledger = json.loads(await anyio.Path(result.ledger_path).read_text())
    assert not any("possible_duplicate" in j.get("flags", []) for j in ledger["jobs"])
