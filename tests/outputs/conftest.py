"""A real S3 server for the object-store tests: moto's ``ThreadedMotoServer`` on 127.0.0.1
with port 0, started once per session in a child process (so its memory and threads stay
out of what the tests measure), and one fresh bucket per test. Only dummy credentials are
ever set; no real AWS configuration is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.outputs.s3_front import S3Front, serve_local

DUMMY_KEY_ID = "AKIDUMMYTESTKEY00000"
DUMMY_SECRET = "dummy-secret-never-real-0123456789abcdef"

_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test session closes it
server.stop()
"""


def dummy_aws_env(endpoint: str, tmp: Path) -> dict[str, str]:
    """The AWS_* environment of a test: dummy keys, the given endpoint, no config files."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _without_aws(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server on 127.0.0.1 (a child process for the session)."""
    env = _without_aws(dict(os.environ)) | dummy_aws_env("", tmp_path_factory.mktemp("aws"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@dataclass
class Bucket:
    """A fresh bucket on the moto server; ``client`` is a boto3 client (dummy keys)."""

    endpoint: str
    name: str
    client: Any

    def url(self, prefix: str = "run") -> str:
        return f"s3://{self.name}/{prefix}"

    def keys(self) -> list[str]:
        """Every object key in the bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads(self) -> list[str]:
        """Keys of the multipart uploads started and neither completed nor aborted."""
        reply = self.client.list_multipart_uploads(Bucket=self.name)
        return sorted(u["Key"] for u in reply.get("Uploads", []))

    def get(self, key: str) -> tuple[bytes, dict[str, str]]:
        """An object's bytes and user metadata."""
        reply = self.client.get_object(Bucket=self.name, Key=key)
        return reply["Body"].read(), reply["Metadata"]


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Dummy AWS credentials and the moto endpoint in this test's environment."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = dummy_aws_env(s3_endpoint, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str], s3_endpoint: str) -> Bucket:
    """A new, empty bucket for this test."""
    import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    name = f"pipeline-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(s3_endpoint, name, client)


@pytest.fixture
async def front(
    s3_endpoint: str, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[S3Front]:
    """The proxy on 127.0.0.1:0, made this test's S3 endpoint."""
    async with aiohttp.ClientSession(auto_decompress=False) as upstream:
        proxy = S3Front(s3_endpoint, upstream)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        runner, proxy.url = await serve_local(app)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        try:
            yield proxy
        finally:
            proxy.release.set()
            await runner.cleanup()
