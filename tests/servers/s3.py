"""pytest fixtures for S3 on a moto server on 127.0.0.1.

``moto_server`` (session) starts moto's standalone server on a free port and yields its
endpoint URL; ``make_s3_storage`` (function) makes a fresh bucket per call and returns an
:class:`S3Storage` on ``s3://<bucket>/some/prefix``. Import both into a conftest::

    from servers.s3 import make_s3_storage, moto_server  # noqa: F401
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from walg.config.settings import S3Settings, Secret
from walg.storage.base import RetryPolicy
from walg.storage.s3 import S3Options, S3Storage
from walg.storage.s3_multipart import MIN_PART_SIZE

__all__ = [
    "FAST_RETRY",
    "PREFIX",
    "S3Maker",
    "make_s3_storage",
    "moto_server",
    "raw_client",
    "start_moto",
    "stop_moto",
]

FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)
"""Retries for tests: the same budget shape as production, with tiny pauses."""
PREFIX = "some/prefix"
REGION = "us-east-1"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_SETTINGS = {f.name for f in dataclasses.fields(S3Settings)}
_OPTIONS = {f.name for f in dataclasses.fields(S3Options)} - {"settings"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int) -> list[str]:
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/data.json", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


def start_moto(log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a moto server on a free port (trying another if the port was taken
    meanwhile); return the process and its endpoint URL. Stop it with :func:`stop_moto`."""
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            process = subprocess.Popen(
                _command(port),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(url):
                return process, url
            time.sleep(0.1)
        stop_moto(process)
    raise RuntimeError(f"moto_server did not start; see {log}")


def stop_moto(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server; kill it if it has not exited after a while."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a moto S3 server on 127.0.0.1, for the whole session."""
    process, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield url
    finally:
        stop_moto(process)


def raw_client(endpoint: str) -> Any:
    """A plain boto3 client straight to ``endpoint`` (not through any proxy), for
    preparing buckets and checking what the server recorded."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )


class S3Maker:
    """Makes S3 storages on fresh buckets of one moto server; ``client`` reaches moto."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client = raw_client(endpoint)
        self.buckets: list[str] = []

    def new_bucket(self, region: str = REGION) -> str:
        """Create a uniquely named, empty bucket."""
        name = f"walg-test-{uuid.uuid4().hex[:16]}"
        if region == REGION:
            self.client.create_bucket(Bucket=name)
        else:
            config = {"LocationConstraint": region}
            self.client.create_bucket(Bucket=name, CreateBucketConfiguration=config)
        self.buckets.append(name)
        return name

    def __call__(
        self, *, create: bool = True, retry: RetryPolicy = FAST_RETRY, **overrides: Any
    ) -> S3Storage:
        """An S3Storage on s3://<new bucket>/some/prefix (path-style, dummy keys, us-east-1,
        5 MiB parts, 2 upload threads).

        ``overrides`` may name any S3Settings field (plain strings for the keys) or any
        S3Options field (bucket, path, part_size, concurrency, proxies, ...). With
        ``create=False`` the bucket is not created.
        """
        unknown = set(overrides) - _SETTINGS - _OPTIONS
        if unknown:
            raise TypeError(f"unknown S3 storage overrides: {sorted(unknown)}")
        settings: dict[str, Any] = {
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "region": REGION,
            "endpoint": self.endpoint,
            "force_path_style": True,
        }
        settings.update({k: v for k, v in overrides.items() if k in _SETTINGS})
        for name in ("access_key_id", "secret_access_key", "session_token"):
            if isinstance(settings.get(name), str):
                settings[name] = Secret(settings[name])
        # Small parts, few threads: a multipart upload holds at most 3 x 5 MiB in tests.
        options: dict[str, Any] = {"path": PREFIX, "concurrency": 2, "part_size": MIN_PART_SIZE}
        options.update({k: v for k, v in overrides.items() if k in _OPTIONS})
        if "bucket" not in options:
            options["bucket"] = self.new_bucket() if create else f"walg-none-{uuid.uuid4().hex}"
        storage = S3Storage(S3Options(settings=S3Settings(**settings), **options), retry)
        storage.client  # noqa: B018 - made now: loading botocore's S3 model takes ~10 MiB
        return storage

    def cleanup(self) -> None:
        """Empty and remove the buckets made (moto keeps everything in memory)."""
        for bucket in self.buckets:
            with contextlib.suppress(Exception):
                _remove_bucket(self.client, bucket)


def _remove_bucket(client: Any, bucket: str) -> None:
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def make_s3_storage(moto_server: str) -> Iterator[S3Maker]:
    """A callable ``(**overrides) -> S3Storage``, each on a fresh bucket of moto_server."""
    maker = S3Maker(moto_server)
    yield maker
    maker.cleanup()
