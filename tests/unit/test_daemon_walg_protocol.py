"""WAL-G's daemon protocol: the framing of WAL-G's ``internal/daemon``, ``wal-g daemon``
serving it next to walg's own protocol on one socket, and ``walg-daemon-client``'s command
line and exit codes (those of WAL-G's ``cmd/daemonclient``)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_wal_daemon import (  # type: ignore[import-not-found]
    CONTENT,
    SEGMENT,
    daemon,
    pgdata,  # noqa: F401 - a fixture
    short_dir,  # noqa: F401 - a fixture
    store,  # noqa: F401 - a fixture
    stored,
    wal_push,
)

from walg.wal.daemon_walg_client import (
    ProtocolError,
    decode_args,
    encode_args,
    encode_message,
    parse_duration,
)

CLIENT = str(Path(sys.executable).parent / "walg-daemon-client")


def exchange(sock: Path, data: bytes, answer_size: int = 8) -> bytes:
    """Send ``data`` on a new connection (then shut down writing); every byte answered
    until the daemon closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock))
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < answer_size:
            chunk = conn.recv(answer_size)
            if not chunk:
                break
            answer += chunk
        return answer


def client(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLIENT, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# -- framing ---------------------------------------------------------------------------


def test_push_message_is_type_length_and_name() -> None:
    """One argument is the body: the bytes WAL-G's test scripts send with nc."""
    assert encode_message(b"F", [SEGMENT.encode()]) == b"F\x00\x1b" + SEGMENT.encode()


def test_fetch_message_matches_wal_g_example() -> None:
    """Two arguments: a count, then uint16 big-endian lengths (daemon_nc_send_wal_fetch.sh)."""
    message = encode_message(b"f", [b"00000001000000000000000A", b"pg_wal/RECOVERYXLOG"])
    assert message[:6] == b"f\x00\x33\x02\x00\x18"
    assert message[30:32] == b"\x00\x13" and len(message) == 0x33


@pytest.mark.parametrize(
    "args", [[], [b""], [b"a", b"bc"], [b"x" * 300, b"y"], [bytes(range(256))] * 3]
)
def test_args_round_trip(args: list[bytes]) -> None:
    assert decode_args(encode_args(args)) == args


@pytest.mark.parametrize(
    "body", [b"", b"\x01", b"\x01\x00", b"\x01\x00\x05abc", b"\x01\x00\x01ab", b"\x02\x00\x01a"]
)
def test_corrupted_args_are_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_args(body)


def test_oversized_message_is_refused() -> None:
    with pytest.raises(ProtocolError):
        encode_message(b"F", [b"x" * 0xFFFD])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("5s", 5.0), ("1m0s", 60.0), ("1h2m3.5s", 3723.5), ("250ms", 0.25),
     ("-2s", -2.0), (".5s", 0.5), ("10us", 1e-5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1.2.3s", "-", "."])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# -- the daemon, both protocols on one socket ------------------------------------------


def test_check_then_push_answers_oo_and_stores(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path  # noqa: F811
) -> None:
    """WAL-G's daemon_test.sh: 'C' then 'F' with the WAL file name on one connection is
    answered "OO" once the segment is stored (PGDATA/pg_wal/NAME), then closed."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path, {"PGDATA": str(pgdata)}) as served:
        data = b"C\x00\x08CHECK" + encode_message(b"F", [SEGMENT.encode()])
        assert exchange(sock, data) == b"OO"
        assert stored(store) == CONTENT
    assert served.served() == [str(pgdata / "pg_wal" / SEGMENT)]


def test_walg_clients_and_wal_g_clients_share_the_socket(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path  # noqa: F811
) -> None:
    """walg's own wal-push (walg-daemon/2) and walg-daemon-client's wal-fetch are both
    served by one daemon; the client's relative destination is PGDATA's."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path, {"PGDATA": str(pgdata)}) as served:
        done = wal_push(pgdata, sock, store, tmp_path)
        assert (done.returncode, done.stderr) == (0, "")
        fetched = client(str(sock), "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG")
        assert (fetched.returncode, fetched.stdout, fetched.stderr) == (0, "", "")
    assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == CONTENT
    assert served.served() == [str(pgdata / "pg_wal" / SEGMENT)]


def test_without_pgdata_paths_are_the_clients_cwd(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path  # noqa: F811
) -> None:
    """A daemon without PGDATA resolves wal-push's name and wal-fetch's destination in the
    client's working directory (where PostgreSQL runs its commands); %p works for wal-push."""
    sock = short_dir / "d.sock"
    with daemon(sock, store, tmp_path):
        pushed = client(str(sock), "wal-push", SEGMENT, cwd=pgdata)
        assert (pushed.returncode, pushed.stderr) == (0, "")
        again = client(str(sock), "WAL-PUSH", f"pg_wal/{SEGMENT}", "-timeout", "30s", cwd=pgdata)
        assert again.returncode == 0, again.stderr
        fetched = client(str(sock), "wal-fetch", SEGMENT, "pg_wal/X", cwd=pgdata)
        assert fetched.returncode == 0, fetched.stderr
    assert stored(store) == CONTENT
    assert (pgdata / "pg_wal" / "X").read_bytes() == CONTENT


def test_errors_and_not_found(
    short_dir: Path, store: Path, pgdata: Path, tmp_path: Path  # noqa: F811
) -> None:
    """'N' (exit 74, message on stdout) for a file not in the archive; 'E' (exit 1) for a
    missing file to push, a bad body, a short length, an unknown type after a check."""
    sock = short_dir / "d.sock"
    missing = "0000000100000000000000FF"
    with daemon(sock, store, tmp_path, {"PGDATA": str(pgdata)}):
        fetch = encode_message(b"f", [missing.encode(), b"pg_wal/RECOVERYXLOG"])
        assert exchange(sock, fetch) == b"N"
        absent = client(str(sock), "wal-fetch", missing, "pg_wal/RECOVERYXLOG")
        assert absent.returncode == 74
        assert "daemon response: N" in absent.stdout
        assert exchange(sock, encode_message(b"F", [missing.encode()])) == b"E"
        assert exchange(sock, b"f\x00\x06\x01\x00\x09") == b"E"  # argument cut short
        assert exchange(sock, b"f\x00\x07\x01\x00\x01a") == b"E"  # one argument, not two
        assert exchange(sock, b"F\x00\x02") == b"E"
        assert exchange(sock, b"C\x00\x03X\x00\x03") == b"OE"
        failed = client(str(sock), "wal-push", missing)
        assert failed.returncode == 1
        assert "daemon response: E" in failed.stderr
        assert exchange(sock, b"C\x00\x03") == b"O"  # then the client closes: no error
        assert exchange(sock, b"C\x00\x03F\x00") == b"OE"  # closed in a header
        assert not (pgdata / "pg_wal" / "RECOVERYXLOG").exists()


def test_client_command_line() -> None:
    """WAL-G's client: usage errors and a missing socket exit 1, --version exits 0."""
    version = client("--version")
    assert version.returncode == 0 and version.stdout.startswith("walg-daemon-client\t")
    for args in ([], ["s"], ["s", "wal-copy"], ["s", "wal-fetch", "a"],
                 ["s", "wal-push", "a", "-timeout", "x"], ["s", "wal-push", "a", "-nope"]):
        done = client(*args)
        assert done.returncode == 1, args
        assert done.stdout.startswith("Error: "), args
    gone = client("/nonexistent/d.sock", "wal-push", SEGMENT)
    assert gone.returncode == 1
    assert "doesn't exist or is unavailable" in gone.stderr


def test_client_times_out(short_dir: Path) -> None:  # noqa: F811
    """A daemon that never answers: exit 1 after -timeout, not a hang."""
    path = short_dir / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        done = client(str(path), "wal-push", SEGMENT, "--timeout=300ms")
    assert done.returncode == 1
    assert "timed out" in done.stderr or "timeout" in done.stderr
