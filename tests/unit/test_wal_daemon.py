"""``wal-g daemon`` and the wal-push fast path (WALG_DAEMON_SOCKET), with real processes
on file storage: served pushes, errors, fallback, storage identity, stop and exclusivity.

The daemon stores with lz4 and the clients are configured for brotli, so an object's
extension tells who pushed it: ``.lz4`` the daemon, ``.br`` a direct (fallback) push.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from walg.compression import method_for_extension, open_decompressed
from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader
from walg.wal.daemon_client import fast_path

SEGMENT = "000000010000000000000003"
# A valid 1 MiB segment 3 (wal-push checks its size and first page header).
CONTENT = LongPageHeader(0xD110, 2, 1, 3 << 20, 0, 7, 1 << 20, 8192).pack() + (
    (b"walg daemon test record " * 40 + bytes(3000)) * 300
)[: (1 << 20) - LONG_HEADER_SIZE]


def base_env(home: Path) -> dict[str, str]:
    """This environment without walg settings, with HOME (for ~/.walg.json) at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "WALE_"))}
    env["HOME"] = str(home)
    return env


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket path must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="walgd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    """A fake PGDATA whose pg_wal holds one segment."""
    path = tmp_path / "pgdata"
    (path / "pg_wal" / "archive_status").mkdir(parents=True)
    (path / "pg_wal" / SEGMENT).write_bytes(CONTENT)
    return path


def start_daemon(sock: Path, store: Path, home: Path) -> subprocess.Popen[str]:
    env = {**base_env(home), "WALG_FILE_PREFIX": str(store), "WALG_COMPRESSION_METHOD": "lz4"}
    return subprocess.Popen(
        [sys.executable, "-m", "walg", "daemon", str(sock)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_listening(proc: subprocess.Popen[str], sock: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if sock.exists():
            return
        time.sleep(0.02)
    raise AssertionError("the daemon did not start listening")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@contextmanager
def daemon(sock: Path, store: Path, home: Path) -> Iterator[subprocess.Popen[str]]:
    proc = start_daemon(sock, store, home)
    try:
        wait_listening(proc, sock)
        yield proc
    finally:
        stop(proc)


def wal_push(
    pgdata: Path, sock: Path, prefix: Path, home: Path, name: str = SEGMENT
) -> subprocess.CompletedProcess[str]:
    """``wal-g wal-push pg_wal/NAME`` as archive_command runs it (cwd PGDATA, relative %p)."""
    env = {
        **base_env(home),
        "WALG_DAEMON_SOCKET": str(sock),
        "WALG_FILE_PREFIX": str(prefix),
        "WALG_COMPRESSION_METHOD": "brotli",
    }
    return subprocess.run(
        [sys.executable, "-m", "walg", "wal-push", f"pg_wal/{name}"],
        cwd=pgdata,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored(store: Path, ext: str) -> bytes:
    with open(store / "wal_005" / f"{SEGMENT}.{ext}", "rb") as raw:
        method = method_for_extension(ext)
        assert method is not None
        return open_decompressed(raw, method, SEGMENT).read()


def test_push_through_daemon_stores_the_segment(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A wal-push with WALG_DAEMON_SOCKET is served by the daemon, which stores the segment."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        assert sock.stat().st_mode & 0o777 == 0o600
        done = wal_push(pgdata, sock, store, tmp_path)
        assert (done.returncode, done.stderr) == (0, "")
        assert stored(store, "lz4") == CONTENT
        assert not (store / "wal_005" / f"{SEGMENT}.br").exists()


def test_daemon_refuses_an_invalid_segment(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """Through the daemon, a file named like a segment but cut short exits 1 with the
    same ERROR as a direct push, and nothing is stored."""
    name = "000000010000000000000004"
    (pgdata / "pg_wal" / name).write_bytes(CONTENT[: 1 << 19])
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        done = wal_push(pgdata, sock, store, tmp_path, name=name)
    assert done.returncode == 1
    assert f"ERROR: {pgdata}/pg_wal/{name} is not a valid WAL file {name}: " in done.stderr
    assert not any(p.is_file() for p in store.rglob("*"))


def test_error_comes_back_as_exit_1_with_error_line(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A push the daemon cannot do (missing file) exits 1 with the ERROR line on stderr."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        done = wal_push(pgdata, sock, store, tmp_path, name="000000010000000000000009")
    assert done.returncode == 1
    assert f"ERROR: WAL file {pgdata}/pg_wal/000000010000000000000009 does not exist" in done.stderr
    assert "HINT:" in done.stderr


def test_without_daemon_the_client_pushes_directly(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """With no daemon on the socket path, wal-push falls back to a direct push, quietly."""
    done = wal_push(pgdata, short_dir / "absent.sock", store, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert stored(store, "br") == CONTENT


def test_stale_socket_is_removed_and_refused_connection_falls_back(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A socket file nobody listens on makes the client push directly, and a daemon replace it."""
    sock = short_dir / "d.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    done = wal_push(pgdata, sock, store, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert stored(store, "br") == CONTENT
    with daemon(sock, store, tmp_path) as proc:
        assert proc.poll() is None


def test_client_for_another_storage_is_refused(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A client configured for another storage is refused (exit 2, a clear ERROR), not served
    and not pushed directly: WALG_DAEMON_SOCKET names the wrong daemon, which is a config error."""
    sock = short_dir / "d.sock"
    other = tmp_path / "other"
    other.mkdir()
    with daemon(sock, store, tmp_path):
        done = wal_push(pgdata, sock, other, tmp_path)
    assert done.returncode == 2
    assert f"archives to {store}, but this wal-push is configured for {other}" in done.stderr
    assert not (store / "wal_005").exists()
    assert not (other / "wal_005").exists()


def test_sigterm_stops_the_daemon_and_removes_the_socket(
    short_dir: Path, store: Path, tmp_path: Path
) -> None:
    """SIGTERM makes the daemon exit 0 and remove its socket file."""
    sock = short_dir / "d.sock"
    proc = start_daemon(sock, store, tmp_path)
    try:
        wait_listening(proc, sock)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not sock.exists()
    finally:
        stop(proc)


def test_second_daemon_on_the_same_socket_refuses_to_start(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A second daemon on a socket a live daemon serves exits non-zero; the first keeps serving."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        second = start_daemon(sock, store, tmp_path)
        try:
            _, err = second.communicate(timeout=30)
        finally:
            stop(second)
        assert second.returncode != 0
        assert "another walg daemon is running on" in err
        done = wal_push(pgdata, sock, store, tmp_path)
        assert (done.returncode, done.stderr) == (0, "")
        assert stored(store, "lz4") == CONTENT


def console_push(pgdata: Path, sock: Path, store: Path, home: Path) -> int:
    """``wal-push`` through the ``console_main`` entry point (daemon first, then walg.cli)."""
    env = {
        **base_env(home),
        "WALG_DAEMON_SOCKET": str(sock),
        "WALG_FILE_PREFIX": str(store),
        "WALG_COMPRESSION_METHOD": "brotli",
    }
    code = "import sys; from walg.wal.daemon_client import console_main; sys.exit(console_main())"
    return subprocess.run(
        [sys.executable, "-c", code, "wal-push", f"pg_wal/{SEGMENT}"],
        cwd=pgdata,
        env=env,
        timeout=60,
    ).returncode


def test_console_main_entry_uses_the_daemon_or_pushes_directly(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """The console_main entry point is served by a running daemon and pushes directly without."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        assert console_push(pgdata, sock, store, tmp_path) == 0
    assert stored(store, "lz4") == CONTENT
    assert console_push(pgdata, sock, store, tmp_path) == 0
    assert stored(store, "br") == CONTENT


def test_fast_path_only_takes_wal_push() -> None:
    """Other commands, options it does not know, or no WALG_DAEMON_SOCKET: the CLI runs as usual."""
    env = {"WALG_DAEMON_SOCKET": "/nonexistent/walg.sock"}
    assert fast_path(["wal-fetch", SEGMENT, "/tmp/x"], env) is None
    assert fast_path(["wal-push", "--help"], env) is None
    assert fast_path(["wal-push", "pg_wal/" + SEGMENT], {}) is None
    assert fast_path(["wal-push", "pg_wal/" + SEGMENT], env) is None  # no daemon: direct
