"""The command line, end to end, as a user drives it (subprocesses, real emulator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.scheduler_support import check_images_match_ledger

ROOT = Path(__file__).resolve().parents[1]

MANIFEST = """\
name: cli-test
defaults: {provider: wavespeed, resolution: 1k, output_format: png}
providers:
  wavespeed: {requests_per_second: 20, max_concurrent: 4}
  skills_video: {requests_per_second: 20, max_concurrent: 4, usd_per_credit: 0.001}
sweep:
  aspect_ratio: ["1:1", "16:9"]
  provider: [wavespeed, skills_video]
prompts:
  - id: fox
    prompt: "a fox in {season}"
    vars: {season: [winter, summer]}
  - "a bare prompt"
"""


def pipeline(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console program as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A small two-axis sweep manifest (12 jobs) in a temporary folder."""
    path = tmp_path / "batch.yaml"
    path.write_text(MANIFEST)
    return path


def test_run_emulate_completes_every_job(manifest: Path, tmp_path: Path) -> None:
    """`pipeline run --emulate` completes all jobs, exit 0, images valid, ledger correct."""
    out = tmp_path / "out"
    proc = pipeline(
        "run",
        str(manifest),
        "--emulate",
        "--emulate-latency",
        "0.05",
        "--out",
        str(out),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["totals"]["completed"] == 12
    ledger = check_images_match_ledger(out)
    assert ledger["name"] == "cli-test"
    assert ledger["finished"] is True
    assert ledger["totals"]["cost_usd"] == pytest.approx(6 * 0.028 + 6 * 20 * 0.001)
    for job in ledger["jobs"]:
        (img,) = job["images"]
        with Image.open(out / img["path"]) as im:
            w, h = im.size
        assert (w, h) == (img["width"], img["height"])
        rw, rh = (int(x) for x in job["params"]["aspect_ratio"].split(":"))
        assert abs(w / h - rw / rh) < 0.05
    ids = {j["id"] for j in ledger["jobs"]}
    assert "fox--1x1-wavespeed-winter" in ids


def test_rerun_sends_nothing_and_status_matches_ledger(manifest: Path, tmp_path: Path) -> None:
    """A second run resumes (no new work), and `status --json` totals equal the ledger's."""
    out = tmp_path / "out"
    args = ("run", str(manifest), "--emulate", "--emulate-latency", "0", "--out", str(out))
    assert pipeline(*args, cwd=tmp_path).returncode == 0
    first = json.loads((out / "ledger.json").read_text())
    again = pipeline(*args, "--json", cwd=tmp_path)
    assert again.returncode == 0
    second = json.loads((out / "ledger.json").read_text())
    assert [j["remote_id"] for j in first["jobs"]] == [j["remote_id"] for j in second["jobs"]]
    assert (
        json.loads(again.stdout)["providers"]["wavespeed"]["requests"]
        == (first["providers"]["wavespeed"]["requests"])
    )
    status = pipeline("status", str(out), "--json", cwd=tmp_path)
    assert status.returncode == 0
    assert json.loads(status.stdout)["totals"] == second["totals"]


def test_quiet_rerun_with_nothing_to_do_loads_no_network_stack(
    manifest: Path, tmp_path: Path
) -> None:
    """A finished batch rerun with -q sends nothing, keeps ledger.json as it is, and never
    imports the HTTP client nor the progress display (a large resume stays fast). The
    providers point at a closed port: anything sent would fail."""
    out = tmp_path / "out"
    args = ("run", str(manifest), "--out", str(out), "-q")
    assert pipeline(*args, "--emulate", "--emulate-latency", "0", cwd=tmp_path).returncode == 0
    ledger = out / "ledger.json"
    written = ledger.stat()
    probe = (
        "import sys; from pipeline.cli._main import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in ('aiohttp', 'rich') if m in sys.modules), file=sys.stderr); "
        "sys.exit(code)"
    )
    closed = "http://127.0.0.1:9"
    env = {"WAVESPEED_API_KEY": "k", "SKILLS_VIDEO_API_KEY": "k"}
    env |= {"WAVESPEED_BASE_URL": closed, "SKILLS_VIDEO_BASE_URL": closed}
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    assert (ledger.stat().st_ino, ledger.stat().st_mtime_ns) == (
        written.st_ino,
        written.st_mtime_ns,
    )


def test_missing_key_is_a_usage_error(manifest: Path, tmp_path: Path) -> None:
    """Without keys (and without --emulate) the run exits 2 naming the variables."""
    proc = pipeline(
        "run",
        str(manifest),
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
        env={"WAVESPEED_BASE_URL": "http://127.0.0.1:9"},
    )
    assert proc.returncode == 2
    assert "WAVESPEED_API_KEY" in proc.stderr
    assert "SKILLS_VIDEO_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_bad_manifest_exits_2_with_file_line_field(tmp_path: Path) -> None:
    """A wrong enum names file, line and field; exit 2; no traceback."""
    bad = tmp_path / "x.yaml"
    bad.write_text("name: x\nprompts:\n  - prompt: a\n    resolution: 8k\n")
    proc = pipeline("run", str(bad), "--emulate", cwd=tmp_path)
    assert proc.returncode == 2
    assert "x.yaml:4" in proc.stderr
    assert "resolution" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plan_json_and_schema(manifest: Path, tmp_path: Path) -> None:
    """`plan --json` counts jobs and cost per provider; `schema` prints a JSON Schema."""
    proc = pipeline("plan", str(manifest), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["totals"]["jobs"] == 12
    assert plan["providers"]["wavespeed"]["usd"] == pytest.approx(6 * 0.028)
    schema = json.loads(pipeline("schema", cwd=tmp_path).stdout)
    assert "prompts" in schema["properties"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Unknown commands and flags exit 2 without a traceback."""
    for args in (("frobnicate",), ("run",), ("run", "x.yaml", "--bogus")):
        proc = pipeline(*args, cwd=tmp_path)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr


def test_unwritable_output_and_broken_state_are_usage_errors(
    manifest: Path, tmp_path: Path
) -> None:
    """An output folder under a file, or a state.db that is not a database: exit 2, no traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.db").write_text("not a database")
    for out in (blocker / "out", broken):
        proc = pipeline("run", str(manifest), "--emulate", "--out", str(out), cwd=tmp_path)
        assert proc.returncode == 2
        assert "\nerror: " in "\n" + proc.stderr
        assert "Traceback" not in proc.stderr


def test_export_writes_a_dataset_and_refuses_to_mix_one(manifest: Path, tmp_path: Path) -> None:
    """`pipeline export DIR --format webdataset --to DEST` writes every completed image
    (exit 0, what it wrote on stdout as JSON); a second export into the same DEST, or
    an unknown format, exits 2 with a message and no traceback."""
    out = tmp_path / "out"
    run = ("run", str(manifest), "--emulate", "--emulate-latency", "0", "--out", str(out))
    assert pipeline(*run, cwd=tmp_path).returncode == 0
    dest = tmp_path / "ds"
    args = ("export", str(out), "--format", "webdataset", "--to", str(dest))
    done = pipeline(*args, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["format"], summary["images"], summary["files"]) == ("webdataset", 12, 1)
    assert [p.name for p in dest.iterdir()] == ["shard-000000.tar"]
    again = pipeline(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert "not empty" in again.stderr
    assert "Traceback" not in again.stderr
    bad = pipeline("export", str(out), "--format", "zip", "--to", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
