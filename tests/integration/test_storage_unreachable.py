"""An unreachable storage fails the real ``wal-g`` fast and clearly (issue 18 item 3).

A port bound and closed again on 127.0.0.1 refuses connections. wal-push, wal-fetch and
backup-list against S3 (AWS_ENDPOINT) and GCS (STORAGE_EMULATOR_HOST) there must end
within 20 s, with default settings, with an ERROR line naming where the storage was
looked for, a HINT, and a non-zero exit: for wal-fetch not 74 ("not in the archive"),
which would end recovery. The background worker's path is checked too: a worker started
while S3 answered serves a wal-push after S3 went away, within the same bound. And a
storage that appears within the budget is a success.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.s3 import moto_server, raw_client, start_moto, stop_moto

from walg.errors import EX_NOT_FOUND
from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader
from walg.wal.background import worker_pid

__all__ = ["moto_server"]  # a fixture, imported for pytest

WALG = str(Path(sys.executable).parent / "wal-g")
LIMIT = 20.0  # seconds: the bound issue 18 sets for a closed port
SEGMENT = 1 << 20
NAMES = [f"00000001000000000000000{i}" for i in range(1, 4)]


def closed_port() -> int:
    """A port on 127.0.0.1 that was just bound and closed: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_segments(pg_wal: Path, numbers: range) -> list[str]:
    """Ready segments (valid first page headers, random content) numbered ``numbers``."""
    rng = random.Random(18)
    names = []
    for i in numbers:
        name = f"0000000100000000000000{i:02X}"
        header = LongPageHeader(0xD110, 2, 1, i * SEGMENT, 0, 7, SEGMENT, 8192)
        (pg_wal / name).write_bytes(header.pack() + rng.randbytes(SEGMENT - LONG_HEADER_SIZE))
        (pg_wal / "archive_status" / f"{name}.ready").touch()
        names.append(name)
    return names


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder shaped like PGDATA, its pg_wal holding ready segments NAMES."""
    (tmp_path / "pg_wal" / "archive_status").mkdir(parents=True)
    add_segments(tmp_path / "pg_wal", range(1, len(NAMES) + 1))
    return tmp_path


def environment(**settings: str) -> dict[str, str]:
    scrub = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "GCS_", "STORAGE_EMULATOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
    return {**env, "WALG_LOG_LEVEL": "NORMAL", **settings}


def s3_env(endpoint: str, bucket: str = "walg-unreachable") -> dict[str, str]:
    return environment(
        WALG_S3_PREFIX=f"s3://{bucket}/cluster",
        AWS_ENDPOINT=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_S3_FORCE_PATH_STYLE="true",
    )


COMMANDS = {
    "wal-push": ["wal-push", f"pg_wal/{NAMES[0]}"],
    "wal-fetch": ["wal-fetch", NAMES[0], "pg_wal/RECOVERYXLOG"],
    "backup-list": ["backup-list"],
}


def run_all(root: Path, env: dict[str, str]) -> dict[str, tuple[float, int, str]]:
    """Each command's (seconds, exit code, stderr), the three run at once."""
    started = {}
    processes = {}
    for what, args in COMMANDS.items():
        started[what] = time.monotonic()
        processes[what] = subprocess.Popen(
            [WALG, *args], cwd=root, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    results = {}
    for what, process in processes.items():
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        results[what] = (time.monotonic() - started[what], process.returncode, err)
    return results


def check_fast_and_clear(results: dict[str, tuple[float, int, str]], said: str) -> None:
    for what, (seconds, code, err) in results.items():
        print(f"{what}: {seconds:.1f} s, exit {code}")
        assert seconds < LIMIT, f"{what} took {seconds:.1f} s:\n{err}"
        assert code != 0, what
        errors = [line for line in err.splitlines() if line.startswith("ERROR")]
        assert errors and said in errors[0], f"{what}:\n{err}"
        assert "refused the connection" in errors[0], f"{what}:\n{err}"
        assert any(line.startswith("HINT") for line in err.splitlines()), f"{what}:\n{err}"
        assert "of of" not in err
        assert "Traceback" not in err
    assert results["wal-fetch"][1] != EX_NOT_FOUND  # an outage is not the end of the archive


def test_s3_on_a_closed_port_fails_fast(root: Path) -> None:
    """S3 with AWS_ENDPOINT on a closed port: each command fails in < 20 s, clearly."""
    port = closed_port()
    results = run_all(root, s3_env(f"http://127.0.0.1:{port}"))
    check_fast_and_clear(results, f"S3 at http://127.0.0.1:{port}/")


def test_gcs_on_a_closed_port_fails_fast(root: Path) -> None:
    """GCS with STORAGE_EMULATOR_HOST on a closed port: the same bound and wording."""
    port = closed_port()
    env = environment(
        WALG_GS_PREFIX="gs://walg-unreachable/cluster",
        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}",
    )
    results = run_all(root, env)
    check_fast_and_clear(results, f"GCS at http://127.0.0.1:{port}/")


def test_background_worker_fails_fast_when_s3_goes_away(root: Path, tmp_path: Path) -> None:
    """A wal-push served by the background worker (started while S3 answered) fails within
    the bound once S3 stops answering, and the worker keeps no hung request."""
    process, endpoint = start_moto(tmp_path / "moto.log")
    try:
        raw_client(endpoint).create_bucket(Bucket="walg-worker")
        env = s3_env(endpoint, "walg-worker")
        first = subprocess.run([WALG, *COMMANDS["wal-push"]], cwd=root, env=env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert first.returncode == 0, first.stderr
        deadline = time.monotonic() + 30
        while worker_pid(str(root / "pg_wal")) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker_pid(str(root / "pg_wal")) is not None
    finally:
        stop_moto(process)
    later = add_segments(root / "pg_wal", range(4, 7))  # PostgreSQL went on writing WAL
    started = time.monotonic()
    second = subprocess.run([WALG, "wal-push", f"pg_wal/{later[0]}"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    seconds = time.monotonic() - started
    print(f"wal-push through the worker: {seconds:.1f} s, exit {second.returncode}")
    assert seconds < LIMIT, second.stderr
    assert second.returncode != 0
    assert "refused the connection" in second.stderr, second.stderr


class LateListener:
    """Forwards 127.0.0.1:<port> to ``upstream`` once ``delay`` seconds have passed; until
    then the port is closed (connections refused)."""

    def __init__(self, port: int, upstream: tuple[str, int], delay: float) -> None:
        self.port, self.upstream, self.delay = port, upstream, delay
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        if self.stopped.wait(self.delay):
            return
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.2)
            while not self.stopped.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._pipe_both, args=(client,), daemon=True).start()

    def _pipe_both(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as server:
            back = threading.Thread(target=_pipe, args=(server, client), daemon=True)
            back.start()
            _pipe(client, server)
            back.join(10)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture
def late_s3(moto_server: str) -> Iterator[tuple[str, str]]:
    """(endpoint, bucket): an S3 endpoint that refuses connections for 2 s, then answers."""
    bucket = f"walg-late-{random.getrandbits(32):08x}"
    raw_client(moto_server).create_bucket(Bucket=bucket)
    port = closed_port()
    upstream = int(moto_server.rsplit(":", 1)[1])
    listener = LateListener(port, ("127.0.0.1", upstream), delay=2.0)
    try:
        yield f"http://127.0.0.1:{port}", bucket
    finally:
        listener.close()


def test_storage_that_appears_within_the_budget_is_a_success(
    late_s3: tuple[str, str], root: Path
) -> None:
    """backup-list against S3 that starts answering 2 s in: retried, then exit 0."""
    endpoint, bucket = late_s3
    started = time.monotonic()
    done = subprocess.run([WALG, "backup-list"], cwd=root, env=s3_env(endpoint, bucket),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "refused the connection" in done.stderr  # it did retry
    assert time.monotonic() - started < LIMIT
