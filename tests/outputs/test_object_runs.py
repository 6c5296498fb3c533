"""Whole runs to ``--out s3://bucket/prefix`` on the S3 server, through the command line
as a user drives it: run, rerun (a resume that sends nothing), status, report, export;
the state in its documented local home; no secret in any file or message."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from tests.outputs.conftest import DUMMY_KEY_ID, DUMMY_SECRET, Bucket

MANIFEST = """\
name: s3-run
providers:
  wavespeed: {requests_per_second: 50, max_concurrent: 4}
  skills_video: {requests_per_second: 50, max_concurrent: 4, usd_per_credit: 0.001}
sweep: {provider: [wavespeed, skills_video]}
prompts: ["a fox in the snow", "a lighthouse at dusk", "a cat on a wall"]
"""


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_batch_in_a_bucket_runs_resumes_and_reads_back(
    bucket: Bucket, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """Six jobs to s3://<bucket>/demo: every image an object whose sha256 is the
    ledger's; the rerun sends nothing; status, report and export read the bucket; the
    state and run.log are in $PIPELINE_HOME/s3/<bucket>/demo; no secret anywhere."""
    (tmp_path / "m.yaml").write_text(MANIFEST)
    home = tmp_path / "home"
    env = {**os.environ, **s3_env, "PIPELINE_HOME": str(home)}
    url = bucket.url("demo")
    run = ("run", "m.yaml", "--emulate", "--emulate-latency", "0.05", "--out", url, "--json")
    first = _cli(*run, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["totals"]["completed"] == 6

    ledger = json.loads(bucket.get("demo/ledger.json")[0])
    for job in ledger["jobs"]:
        (image,) = job["images"]
        data, _ = bucket.get(f"demo/{image['path']}")
        assert hashlib.sha256(data).hexdigest() == image["sha256"]
    assert len(bucket.keys()) == 7  # six images and ledger.json: nothing temporary
    local = home / "s3" / bucket.name / "demo"
    assert (local / "state.db").is_file()
    assert (local / "run.log").is_file()

    again = _cli(*run, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert (
        json.loads(again.stdout)["providers"]["wavespeed"]["requests"]
        == (ledger["providers"]["wavespeed"]["requests"])
    )

    status = _cli("status", url, "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totals"]["completed"] == 6

    report = _cli("report", url, cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr
    assert Path(report.stdout.strip()) == local / "report.html"
    assert len(list((local / "images").iterdir())) == 6

    dest = tmp_path / "ds"
    export = _cli("export", url, "--format", "parquet", "--to", str(dest), cwd=tmp_path, env=env)
    assert export.returncode == 0, export.stderr
    assert pq.read_table(dest / "data-00000.parquet").num_rows == 6

    texts = [first.stdout, first.stderr, again.stderr, (local / "run.log").read_text()]
    texts.append(bucket.get("demo/ledger.json")[0].decode())
    for text in texts:
        assert DUMMY_SECRET not in text
        assert DUMMY_KEY_ID not in text


def test_a_url_with_credentials_is_refused_before_anything_is_sent(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    """``s3://key:secret@bucket/x`` is exit 2 with a message that does not echo it."""
    (tmp_path / "m.yaml").write_text(MANIFEST)
    env = {**os.environ, **s3_env, "PIPELINE_HOME": str(tmp_path / "home")}
    url = "s3://AKIAEXAMPLE:hunter2secret@bucket/x"
    done = _cli("run", "m.yaml", "--emulate", "--out", url, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "hunter2secret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()  # nothing made for it
