"""``wal-g daemon`` and the wal-push fast path (WALG_DAEMON_SOCKET), with real processes
on file storage: served pushes, errors, fallback, storage identity and settings, stop and
exclusivity.

The daemon logs at DEVEL level, one ``daemon: wal-push done`` line per push it served:
:func:`served` reads them, to tell a served push from a direct (fallback) one.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from servers.logtext import untimed
from test_wal_push import pgp_key  # type: ignore[import-not-found]  # noqa: F401

from walg.compression import method_for_extension, open_decompressed
from walg.crypto import looks_encrypted
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


def start_daemon(
    sock: Path, store: Path, home: Path, settings: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``wal-g daemon SOCK`` for file storage ``store``, logging at DEVEL in JSON lines (read
    by ``Daemon.served``), with ``settings``."""
    env = {
        **base_env(home),
        "WALG_FILE_PREFIX": str(store),
        "WALG_LOG_LEVEL": "DEVEL",
        "WALG_LOG_FORMAT": "json",
        **(settings or {}),
    }
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


def stop(proc: subprocess.Popen[str]) -> str:
    """Stop ``proc``; its stderr (the daemon's log)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=15)[1] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1] or ""


class Daemon:
    """A running daemon's process; ``log`` is its stderr once it stopped."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.log = ""

    def served(self) -> list[str]:
        """The files of the pushes it served (after it stopped)."""
        events = [json.loads(line) for line in self.log.splitlines() if line.startswith("{")]
        return [e["file"] for e in events if e["event"] == "daemon: wal-push done"]


@contextmanager
def daemon(
    sock: Path, store: Path, home: Path, settings: Mapping[str, str] | None = None
) -> Iterator[Daemon]:
    """A daemon for ``store`` with extra ``settings``, stopped (and its log read) on exit."""
    running = Daemon(start_daemon(sock, store, home, settings))
    try:
        wait_listening(running.proc, sock)
        yield running
    finally:
        running.log = stop(running.proc)


def wal_push(
    pgdata: Path,
    sock: Path,
    prefix: Path,
    home: Path,
    name: str = SEGMENT,
    settings: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``wal-g wal-push pg_wal/NAME`` as archive_command runs it (cwd PGDATA, relative %p)."""
    env = {
        **base_env(home),
        "WALG_DAEMON_SOCKET": str(sock),
        "WALG_FILE_PREFIX": str(prefix),
        **(settings or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "walg", "wal-push", f"pg_wal/{name}"],
        cwd=pgdata,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored(store: Path, ext: str = "lz4") -> bytes:
    with open(store / "wal_005" / f"{SEGMENT}.{ext}", "rb") as raw:
        method = method_for_extension(ext)
        assert method is not None
        return open_decompressed(raw, method, SEGMENT).read()


def test_push_through_daemon_stores_the_segment(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A wal-push with WALG_DAEMON_SOCKET is served by the daemon, which stores the segment."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path) as served:
        assert sock.stat().st_mode & 0o777 == 0o600
        done = wal_push(pgdata, sock, store, tmp_path)
        assert (done.returncode, untimed(done.stderr)) == (0, "")
        assert stored(store) == CONTENT
    assert served.served() == [str(pgdata / "pg_wal" / SEGMENT)]


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
    assert f"ERROR: {pgdata}/pg_wal/{name} is not a valid WAL file {name}: " in untimed(done.stderr)
    assert not any(p.is_file() for p in store.rglob("*"))


def test_error_comes_back_as_exit_1_with_error_line(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A push the daemon cannot do (missing file) exits 1 with the ERROR line on stderr."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        done = wal_push(pgdata, sock, store, tmp_path, name="000000010000000000000009")
    assert done.returncode == 1
    err = untimed(done.stderr)
    assert f"ERROR: WAL file {pgdata}/pg_wal/000000010000000000000009 does not exist" in err
    assert "HINT:" in untimed(done.stderr)


def test_without_daemon_the_client_pushes_directly(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """With no daemon on the socket path, wal-push falls back to a direct push, quietly."""
    done = wal_push(pgdata, short_dir / "absent.sock", store, tmp_path)
    assert (done.returncode, untimed(done.stderr)) == (0, "")
    assert stored(store) == CONTENT


def test_stale_socket_is_removed_and_refused_connection_falls_back(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path
) -> None:
    """A socket file nobody listens on makes the client push directly, and a daemon replace it."""
    sock = short_dir / "d.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    done = wal_push(pgdata, sock, store, tmp_path)
    assert (done.returncode, untimed(done.stderr)) == (0, "")
    assert stored(store) == CONTENT
    with daemon(sock, store, tmp_path) as running:
        assert running.proc.poll() is None


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
    err = untimed(done.stderr)
    assert f"archives to {store}, but this wal-push is configured for {other}" in err
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
    with daemon(sock, store, tmp_path) as first:
        second = start_daemon(sock, store, tmp_path)
        try:
            _, err = second.communicate(timeout=30)
        finally:
            stop(second)
        assert second.returncode != 0
        assert "another walg daemon is running on" in err
        done = wal_push(pgdata, sock, store, tmp_path)
        assert (done.returncode, untimed(done.stderr)) == (0, "")
        assert stored(store) == CONTENT
    assert first.served() == [str(pgdata / "pg_wal" / SEGMENT)]


def test_fast_path_only_takes_wal_push() -> None:
    """Other commands, options it does not know, or no WALG_DAEMON_SOCKET: the CLI runs as usual."""
    env = {"WALG_DAEMON_SOCKET": "/nonexistent/walg.sock"}
    assert fast_path(["wal-fetch", SEGMENT, "/tmp/x"], env) is None
    assert fast_path(["wal-push", "--help"], env) is None
    assert fast_path(["wal-push", "pg_wal/" + SEGMENT], {}) is None
    assert fast_path(["wal-push", "pg_wal/" + SEGMENT], env) is None  # no daemon: direct


# --- settings that change how data is stored: refused unless they match the daemon's --------

KEY = "<key file>"  # replaced by the path of a real key file in the tests


@pytest.fixture
def key_file(tmp_path: Path, pgp_key: str) -> Path:  # noqa: F811
    path = tmp_path / "key.asc"
    path.write_text(pgp_key)
    return path


def with_key(settings: dict[str, str], key: Path) -> dict[str, str]:
    return {name: str(key) if value == KEY else value for name, value in settings.items()}


@pytest.mark.parametrize(
    ("daemon_settings", "client_settings", "named"),
    [
        pytest.param({}, {"WALG_COMPRESSION_METHOD": "lzma"}, "WALG_COMPRESSION_METHOD differs",
                     id="compression"),
        pytest.param({}, {"WALG_PREVENT_WAL_OVERWRITE": "true"},
                     "WALG_PREVENT_WAL_OVERWRITE differs", id="overwrite"),
        pytest.param({}, {"WALG_COMPRESSION_METHOD": "lzma", "WALG_PREVENT_WAL_OVERWRITE": "true"},
                     "WALG_COMPRESSION_METHOD, WALG_PREVENT_WAL_OVERWRITE differ", id="both"),
        pytest.param({}, {"WALG_PGP_KEY_PATH": KEY}, "WALG_PGP_KEY_PATH differs",
                     id="client-encrypts"),
        pytest.param({"WALG_PGP_KEY_PATH": KEY}, {}, "WALG_PGP_KEY_PATH differs",
                     id="daemon-encrypts"),
        pytest.param({"WALG_PGP_KEY": "secret-key-one"}, {"WALG_PGP_KEY": "secret-key-two"},
                     "WALG_PGP_KEY differs", id="other-key"),
    ],
)  # fmt: skip
def test_client_with_other_data_settings_is_refused(
    short_dir: Path,
    store: Path,
    pgdata: Path,
    tmp_path: Path,
    key_file: Path,
    daemon_settings: dict[str, str],
    client_settings: dict[str, str],
    named: str,
) -> None:
    """A wal-push whose compression, overwrite prevention or PGP key differs from the
    daemon's is refused (exit 2, naming the settings, never their values): nothing is stored,
    neither by the daemon with its own settings nor by a direct push."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path, with_key(daemon_settings, key_file)) as running:
        done = wal_push(pgdata, sock, store, tmp_path, settings=with_key(client_settings, key_file))
    assert done.returncode == 2, untimed(done.stderr)
    assert f"runs with other settings than this wal-push: {named}" in untimed(done.stderr)
    assert "HINT: start the daemon with the same settings" in untimed(done.stderr)
    assert "secret-key" not in untimed(done.stderr)
    assert running.served() == []
    assert not any(p.is_file() for p in store.rglob("*"))


def test_client_with_the_same_settings_is_served(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path, key_file: Path
) -> None:
    """A client with the daemon's own compression, overwrite prevention and key is served:
    the segment is stored brotli-compressed and encrypted, by the daemon."""
    settings = {
        "WALG_COMPRESSION_METHOD": "brotli",
        "WALG_PREVENT_WAL_OVERWRITE": "true",
        "WALG_PGP_KEY_PATH": str(key_file),
        "WALG_UPLOAD_CONCURRENCY": "3",  # not compared: the daemon's own applies
    }
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path, settings) as running:
        client = {**settings, "WALG_UPLOAD_CONCURRENCY": "1"}
        done = wal_push(pgdata, sock, store, tmp_path, settings=client)
    assert (done.returncode, untimed(done.stderr)) == (0, "")
    assert running.served() == [str(pgdata / "pg_wal" / SEGMENT)]
    assert looks_encrypted((store / "wal_005" / f"{SEGMENT}.br").read_bytes()[:64])


def test_client_of_a_daemon_running_as_another_user_sends_nothing(
    tmp_path: Path, store: Path, pgdata: Path
) -> None:
    """A socket served by another user's process is refused (exit 2) before the client sends
    its settings (which may hold a PGP key) or trusts an answer about its WAL."""
    if os.getuid() != 0:
        pytest.skip("needs root, to listen as another user")
    try:
        other = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user to listen as")
    folder = Path(tempfile.mkdtemp(prefix="walgd-", dir="/tmp"))
    try:
        os.chown(folder, other.pw_uid, other.pw_gid)
        sock = folder / "d.sock"
        listener = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", sys.executable, "-c", LISTENER, str(sock)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
            done = wal_push(pgdata, sock, store, tmp_path, settings={"WALG_PGP_KEY": "secret"})
            received = listener.communicate(timeout=30)[0]
        finally:
            stop(listener)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 2
    assert f"runs as user ID {other.pw_uid}, not as this user" in untimed(done.stderr)
    assert received == "0\n"
    assert not any(p.is_file() for p in store.rglob("*"))


LISTENER = """
import socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
conn.settimeout(30)
size = 0
while chunk := conn.recv(65536):
    size += len(chunk)
print(size)
"""
