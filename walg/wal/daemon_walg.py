"""WAL-G's daemon protocol, served by ``wal-g daemon`` on the same socket as walg's own.

A connection whose first byte is a WAL-G message type (``C``, ``F``, ``f``) is WAL-G's
(walg's requests start with ``walg-daemon/``): :func:`serve` answers it as WAL-G's daemon
does (framing: :mod:`walg.wal.daemon_walg_client`). WAL-G's client sends no settings, so
its requests run with the daemon's own settings and storage, through the same push and
fetch as walg's requests: ``O`` only after push_wal returned (the segment is stored) or
the fetched file is in place; ``N`` when wal-fetch's file is not in the archive (the
client exits 74); ``E`` for any other failure (logged by the daemon with its reason).

Paths, as WAL-G's daemon resolves them against its PGDATA: ``F``'s body is the WAL file
name, in ``PGDATA/pg_wal`` (``wal-push %f``); ``f``'s destination is relative to PGDATA
(PostgreSQL's ``%p``, e.g. ``pg_wal/RECOVERYXLOG``). Beyond WAL-G: an absolute path is
taken as it is, an ``F`` body with a ``/`` (``%p``) is relative to PGDATA, and without a
PGDATA setting the base is the client's working directory (PostgreSQL runs archive_command
and restore_command in the data directory), read from /proc through SO_PEERCRED.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from typing import TYPE_CHECKING, Final, Protocol

from walg.errors import EX_NOT_FOUND, WalgError
from walg.logs import get_logger
from walg.wal.daemon_client import MAGIC
from walg.wal.daemon_walg_client import (
    CHECK,
    ERROR,
    FETCH,
    NOT_FOUND,
    OK,
    PUSH,
    ProtocolError,
    decode_args,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from walg.config import Settings

__all__ = ["FIRST_BYTES", "Host", "is_walg_protocol", "read_message", "serve"]

FIRST_BYTES: Final = frozenset((CHECK, PUSH, FETCH))
"""The first byte of a WAL-G protocol connection (walg's requests start with MAGIC)."""
READ_TIMEOUT: Final = 30.0
"""Seconds to wait for the next message (WAL-G's clients send theirs at once)."""
assert MAGIC[:1].encode() not in FIRST_BYTES

_log = get_logger("walg.daemon")


class Host(Protocol):
    """What :func:`serve` needs of the daemon (:class:`walg.wal.daemon.WalDaemon`)."""

    settings: Settings

    def _push(self, path: str) -> None: ...

    def _fetch(self, name: str, destination: str, prefetch: bool) -> None: ...

    def _failure(self, command: str, path: str, err: Exception) -> tuple[int, str]: ...


class _Refused(WalgError):
    """A WAL-G request the daemon cannot run (bad body, no base directory)."""


def is_walg_protocol(conn: socket.socket) -> bool:
    """Whether the first byte waiting on ``conn`` is a WAL-G message type (not consumed)."""
    conn.settimeout(READ_TIMEOUT)
    try:
        first = conn.recv(1, socket.MSG_PEEK)
    except OSError:
        return False
    return first in FIRST_BYTES


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_message(conn: socket.socket) -> tuple[bytes, bytes] | None:
    """``(type, body)`` of the next message; None at a clean end of the connection.
    ProtocolError, EOFError or OSError otherwise."""
    first = conn.recv(1)
    if not first:
        return None
    header = first + _read_exactly(conn, 2)
    length = int.from_bytes(header[1:3], "big")
    if length < 3:
        raise ProtocolError(f"message too short: {length}")
    return header[:1], _read_exactly(conn, length - 3)


def serve(conn: socket.socket, host: Host) -> None:
    """Answer the messages of one WAL-G connection: checks until a wal-push or wal-fetch,
    whose answer ends it; an error answers ``E`` and ends it too."""
    conn.settimeout(READ_TIMEOUT)
    while True:
        try:
            message = read_message(conn)
        except (ProtocolError, EOFError, OSError) as err:
            _log.warning("daemon: bad WAL-G protocol message", error=str(err))
            _reply(conn, ERROR)
            return
        if message is None:
            return
        kind, body = message
        if kind != CHECK:
            break
        if not _reply(conn, OK):
            return
    _reply(conn, _answer(conn, host, kind, body))


def _answer(conn: socket.socket, host: Host, kind: bytes, body: bytes) -> bytes:
    if kind == PUSH:
        return _run(host, "wal-push", body, lambda: _push(conn, host, body))
    if kind == FETCH:
        return _run(host, "wal-fetch", body, lambda: _fetch(conn, host, body))
    _log.warning("daemon: unexpected WAL-G message type", type=kind.decode("latin-1"))
    return ERROR


def _reply(conn: socket.socket, answer: bytes) -> bool:
    try:
        conn.sendall(answer)
    except OSError:  # the client gave up; PostgreSQL retries
        return False
    return True


def _run(host: Host, command: str, body: bytes, action: Callable[[], None]) -> bytes:
    """Run ``action``: the answer byte (a failure is logged by the daemon)."""
    try:
        action()
    except Exception as err:
        code, _ = host._failure(f"{command} (WAL-G protocol)", _label(body), err)
        return NOT_FOUND if command == "wal-fetch" and code == EX_NOT_FOUND else ERROR
    return OK


def _push(conn: socket.socket, host: Host, body: bytes) -> None:
    name = _text(body)
    if not name:
        raise _Refused("a WAL-G wal-push message names no file")
    relative = name if "/" in name else os.path.join("pg_wal", name)
    host._push(_resolve(conn, host, relative))


def _fetch(conn: socket.socket, host: Host, body: bytes) -> None:
    try:
        args = [_text(arg) for arg in decode_args(body)]
    except ProtocolError as err:
        raise _Refused(f"a WAL-G wal-fetch message is not valid: {err}") from None
    if len(args) != 2 or not args[0] or "/" in args[0] or not args[1]:
        raise _Refused("a WAL-G wal-fetch message needs a WAL file name and a destination")
    host._fetch(args[0], _resolve(conn, host, args[1]), True)


def _label(body: bytes) -> str:
    """The file a message names, for the daemon's log."""
    with contextlib.suppress(ProtocolError):
        return " ".join(_text(arg) for arg in decode_args(body))
    return _text(body)


def _text(data: bytes) -> str:
    return os.fsdecode(data)


def _resolve(conn: socket.socket, host: Host, path: str) -> str:
    """``path`` made absolute against PGDATA, else against the client's working directory."""
    if os.path.isabs(path):
        return path
    base = host.settings.postgres.data_dir or _peer_cwd(conn)
    if not base:
        raise _Refused(
            f"the walg daemon cannot tell the data directory {path!r} is relative to",
            hint="set PGDATA for the daemon, as for WAL-G's daemon",
        )
    return os.path.join(base, path)


def _peer_cwd(conn: socket.socket) -> str | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        return os.readlink(f"/proc/{pid}/cwd") if pid > 0 else None
    except OSError:
        return None
