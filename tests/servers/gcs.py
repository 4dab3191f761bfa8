"""A gcp-storage-emulator on 127.0.0.1 for the session, and GcsStorage folders on it.

The emulator runs in memory, started from this file (``python gcs.py start ...`` runs its
own ``main``) with two changes to how it serves, none to what it answers:

- it handles one request at a time, and writes a response while blocking all others; real
  GCS does not, and a download held open while the same process uploads (``copy_object`` of
  a large object) would wait on itself. So it runs on a ThreadingHTTPServer, with its
  (not thread-safe) request handling serialized by a lock and responses written outside it;
- it ignores ``ifGenerationMatch``; real GCS answers 412 to an upload with
  ``ifGenerationMatch=0`` when the object exists. Media uploads (the name in the query, as
  walg's create-if-absent sends them) get that check, made under the same lock as the write;
- after every change it re-serializes the metadata of every object it holds to a file that,
  in memory mode, is never read back: quadratic in the objects of a test session. That
  write is skipped in memory mode.

Import both fixtures into a conftest::

    from servers.gcs import gcs_emulator, make_gcs_storage  # noqa: F401
"""

from __future__ import annotations

import contextlib
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

__all__ = ["FAST_RETRY", "create_bucket", "free_port", "gcs_emulator", "make_gcs_storage"]

FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)
"""Retries for tests: the same budget shape as production, without the waiting."""

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(process: subprocess.Popen[bytes], endpoint: str, log: Any) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gcp-storage-emulator exited: {log.read().decode()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(endpoint + "/", timeout=1).ok:
                return
        time.sleep(0.05)
    raise RuntimeError(f"gcp-storage-emulator did not answer on {endpoint}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The endpoint URL (``http://127.0.0.1:<port>``) of an in-memory GCS emulator."""
    with running_emulator() as endpoint:
        yield endpoint


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
    """Start an in-memory emulator on a free loopback port; yield its URL; stop it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, __file__, "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--in-memory", "--quiet"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(process, endpoint, log)
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


def _serve_emulator(argv: list[str]) -> int:
    """Run gcp-storage-emulator's ``main`` with the serving changes the docstring lists."""
    import http.server
    import threading

    from gcp_storage_emulator import server, storage
    from gcp_storage_emulator.__main__ import main

    lock = threading.Lock()
    handle, close = server.Router.handle, server.Response.close

    def serialized_handle(router: Any, method: str) -> None:
        with lock:
            if not _refused_as_existing(router._request_handler, method):
                handle(router, method)  # its final Response.close only records the response
        response = router._request_handler.__dict__.pop("walg_response", None)
        if response is not None:
            close(response)  # written outside the lock: a slow reader blocks nobody

    def deferred_close(response: Any) -> None:
        response._handler.walg_response = response

    write_config = storage.Storage._write_config_to_file

    def write_config_if_on_disk(self: Any) -> None:
        if not self._use_memory_fs:
            write_config(self)

    http.server.HTTPServer = http.server.ThreadingHTTPServer  # type: ignore[misc]
    server.Router.handle = serialized_handle  # type: ignore[method-assign]
    server.Response.close = deferred_close  # type: ignore[method-assign]
    storage.Storage._write_config_to_file = write_config_if_on_disk  # type: ignore[method-assign]
    return int(main(argv) or 0)


def _refused_as_existing(handler: Any, method: str) -> bool:
    """Answer 412, as GCS does, to a media upload with ``ifGenerationMatch=0`` whose object
    exists; whether it did."""
    import json
    import re
    from urllib.parse import parse_qs, urlparse

    from gcp_storage_emulator.exceptions import NotFound

    url = urlparse(handler.path)
    query = parse_qs(url.query)
    bucket = re.search(r"/b/([^/]+)/o$", url.path)
    if method != "POST" or query.get("ifGenerationMatch") != ["0"] or "name" not in query:
        return False
    if bucket is None:
        return False
    try:
        handler.storage.get_file_obj(bucket.group(1), query["name"][0])
    except NotFound:
        return False
    handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    body = json.dumps({"error": {"code": 412, "message": "conditionNotMet"}}).encode()
    handler.send_response(412, "Precondition Failed")
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    return True


if __name__ == "__main__":
    sys.exit(_serve_emulator(sys.argv[1:]))
