"""write_report end to end: a real batch run against the emulator, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.emulator import EmulatorServer
from pipeline.engine._runner import RunOptions, run_batch
from pipeline.errors import UsageError
from pipeline.gallery import REPORT_NAME, write_report
from pipeline.manifest import load_manifest
from tests.scheduler_support import PROVIDERS

from ._support import Page, job, write_batch

MANIFEST = """\
name: report-e2e
defaults: {resolution: 1k, output_format: png, n: 1}
budget: {max_usd: 0.15}
providers:
  wavespeed: {requests_per_second: 50, max_concurrent: 8}
  skills_video: {requests_per_second: 50, max_concurrent: 8, usd_per_credit: 0.0014}
sweep:
  aspect_ratio: ["1:1", "16:9"]
  provider: [wavespeed, skills_video]
prompts:
  - id: cup
    prompt: "A teacup, {style}"
    vars: {style: [ink sketch, "<b>bold</b> [[fail]]"]}
  - id: pair
    prompt: Two pears on a plate
    n: 2
"""


def tree(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


@pytest.mark.anyio
async def test_report_of_a_real_batch_shows_every_image_failure_and_pending_job(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A sweep run on the emulator (failures, a budget stop) renders every job in its cell."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    out = tmp_path / "out"
    batch = load_manifest(manifest, out=str(out))
    options = RunOptions(
        base_urls={p: emulator.base_url for p in PROVIDERS},
        api_keys={p: "test-key" for p in PROVIDERS},
        tier_defaults=False,
    )
    await run_batch(batch, options)
    ledger = json.loads((out / "ledger.json").read_text())
    statuses = {j["status"] for j in ledger["jobs"]}
    assert {"completed", "failed", "pending"} <= statuses

    path = write_report(out)
    assert path == out / REPORT_NAME
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    links = {a["href"] for a in page.with_class("a", "img")}
    assert links == {i["path"] for j in ledger["jobs"] for i in j["images"]}
    assert {"1:1", "16:9", "wavespeed", "skills_video", "ink sketch", "cup", "pair"} <= set(
        page.texts["val"]
    )
    failed_codes = {j["error"]["code"] for j in ledger["jobs"] if j["status"] == "failed"}
    for code in failed_codes:
        assert code in " ".join(page.texts["error"])
    assert "&lt;b&gt;bold&lt;/b&gt;" in text
    assert "<b>bold" not in text
    assert len(page.with_class("div", "job")) == len(ledger["jobs"])


def test_missing_ledger_is_a_usage_error(tmp_path: Path) -> None:
    """A folder without ledger.json (or no folder at all) raises UsageError, writes nothing."""
    with pytest.raises(UsageError, match=r"ledger\.json"):
        write_report(tmp_path)
    with pytest.raises(UsageError, match="not a folder"):
        write_report(tmp_path / "nope")
    assert list(tmp_path.iterdir()) == []


def test_sparse_ledger_still_renders(tmp_path: Path) -> None:
    """A ledger with nulls and missing optional fields (older writer) renders without error."""
    doc = {"jobs": [{"id": "a", "prompt": None, "variant": None, "params": None, "images": None}]}
    (tmp_path / "ledger.json").write_text(json.dumps(doc), encoding="utf-8")
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert text.count("<thead>") == text.count("</thead>") == 1
    page = Page(text)
    assert "a" in page.texts["val"]
    assert "all jobs" in page.texts["val"]
    assert page.texts["badge"] == ["in progress", "pending"]
    nums = dict(zip(page.texts["lbl"], page.texts["num"], strict=True))
    assert nums["jobs"] == "1"


def test_unreadable_ledger_is_a_usage_error(tmp_path: Path) -> None:
    """Broken JSON or a ledger of the wrong shape raises UsageError."""
    (tmp_path / "ledger.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match="not a readable ledger"):
        write_report(tmp_path)
    (tmp_path / "ledger.json").write_text('{"jobs": [{"status": "done"}]}', encoding="utf-8")
    with pytest.raises(UsageError, match=r"jobs\.0\.id"):
        write_report(tmp_path)


def test_unknown_axis_is_a_usage_error_and_writes_nothing(sweep_dir: Path) -> None:
    """--rows colour on a batch without that axis: UsageError naming the known axes."""
    with pytest.raises(UsageError, match=r"unknown axis 'colour'.*style"):
        write_report(sweep_dir, rows="colour")
    assert not (sweep_dir / REPORT_NAME).exists()
    assert not (sweep_dir / "thumbs").exists()


def test_rows_and_cols_options_shape_the_sheet(sweep_dir: Path) -> None:
    """rows=style, cols=provider: two style rows, two provider columns in the page."""
    page = Page(write_report(sweep_dir, rows="style", cols="provider").read_text("utf-8"))
    corner = " ".join(page.texts["corner"])
    assert "style" in corner
    assert "provider" in corner
    rows = [a for a in page.with_class("th", "hdr") if a.get("scope") == "row"]
    assert len(rows) == 2


def test_hostile_ledger_paths_are_refused_and_nothing_is_written_outside(tmp_path: Path) -> None:
    """../, absolute and symlinked paths are shown as refused, never linked or thumbnailed;
    a report.html symlink is replaced, not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.html").write_text("keep", encoding="utf-8")
    root = tmp_path / "batch"
    jobs = [job("ok", prompt_id="ok"), job("evil", prompt_id="evil", n=3)]
    jobs[1]["images"][0]["path"] = "../outside/victim.html"
    jobs[1]["images"][1]["path"] = str(outside / "victim.html")
    jobs[1]["images"][2]["path"] = "images/linked.png"
    write_batch(root, jobs)
    (root / "images" / "linked.png").unlink()
    (root / "images" / "linked.png").symlink_to(outside / "victim.html")
    (root / REPORT_NAME).symlink_to(outside / "victim.html")
    before = tree(outside)

    text = write_report(root).read_text(encoding="utf-8")
    assert tree(outside) == before
    assert (outside / "victim.html").read_text(encoding="utf-8") == "keep"
    assert not (root / REPORT_NAME).is_symlink()
    page = Page(text)
    assert {a["href"] for a in page.with_class("a", "img")} == {"images/ok-1.png"}
    assert all("outside" not in v for v in page.attr_values("href") + page.attr_values("src"))
    assert " ".join(page.texts["noimg"]).count("refused") == 3
