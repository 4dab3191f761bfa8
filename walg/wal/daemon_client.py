"""The client side of ``wal-g daemon``: hand a ``wal-push`` to a running daemon.

``walg.cli.main`` calls :func:`fast_path` before anything else. When ``WALG_DAEMON_SOCKET``
is set and the command line is ``wal-g [--config FILE] wal-push PATH``, the request goes to
the daemon listening on that unix socket, and its answer (exit code, ERROR/HINT lines) is
this process's. If no daemon is there (no socket file, connection refused), ``fast_path``
returns None and the caller pushes directly, as without the variable.

This module imports only ``os``, ``socket`` and ``sys``: it runs once per WAL segment, and
what it saves is exactly the start-up time of the rest of walg.

The protocol (one request per connection; see :mod:`walg.wal.daemon`):

- request: NUL-separated UTF-8 fields, then the client shuts down its writing side::

      walg-daemon/1 \\0 wal-push \\0 <absolute path> \\0 <--config file or empty>
      \\0 NAME=VALUE ...   (the client's storage prefix variables, and HOME)

- answer: ``<exit code>\\n<message>`` (the message is the ERROR/HINT lines, or empty), then
  the daemon closes the connection. No answer at all (EOF) means the daemon stopped first.
"""

from __future__ import annotations

import os
import socket
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms on this path
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final

__all__ = [
    "ANSWER_TIMEOUT",
    "CONNECT_TIMEOUT",
    "IDENTITY_VARIABLES",
    "MAGIC",
    "SOCKET_VARIABLE",
    "console_main",
    "fast_path",
    "request",
]

SOCKET_VARIABLE: Final = "WALG_DAEMON_SOCKET"
MAGIC: Final = "walg-daemon/1"
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to wait for the daemon to accept; longer, and the client pushes directly."""
ANSWER_TIMEOUT: Final = 600.0
"""Seconds to wait for the answer (a huge file on a slow network); never forever."""
IDENTITY_VARIABLES: Final = (
    "WALG_FILE_PREFIX",
    "WALG_S3_PREFIX",
    "WALG_GS_PREFIX",
    "WALE_FILE_PREFIX",
    "WALE_S3_PREFIX",
    "WALE_GS_PREFIX",
    "HOME",  # where the default config file ~/.walg.json is
)
"""What the client sends so that the daemon can tell which storage it is configured for."""

_MAX_ANSWER: Final = 1 << 16
_tried = False  # console_main already tried the daemon: walg.cli.main must not again


def _wal_push_args(argv: Sequence[str]) -> tuple[str, str] | None:
    """``(path, config file or "")`` for ``[--config FILE] wal-push PATH``, else None."""
    args = list(argv)
    config_file = ""
    if len(args) == 4 and args[0] == "--config":
        config_file, args = args[1], args[2:]
    elif len(args) == 3 and args[0].startswith("--config="):
        config_file, args = args[0].partition("=")[2], args[1:]
    if len(args) != 2 or args[0] != "wal-push" or not args[1] or args[1].startswith("-"):
        return None
    return args[1], config_file


def request(
    socket_path: str, path: str, config_file: str, environ: Mapping[str, str]
) -> tuple[int, str] | None:
    """Ask the daemon at ``socket_path`` to push ``path``: ``(exit code, message)``, or None
    when no daemon accepts the connection (the caller then pushes directly)."""
    fields = [MAGIC, "wal-push", os.path.abspath(path), config_file]
    fields += [f"{name}={environ[name]}" for name in IDENTITY_VARIABLES if name in environ]
    payload = "\0".join(fields).encode("utf-8", "surrogateescape")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT)
        try:
            conn.connect(socket_path)
        except OSError:  # no socket file, nobody listening, backlog full: push directly
            return None
        conn.settimeout(ANSWER_TIMEOUT)
        try:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            answer = _read_all(conn)
        except TimeoutError:
            return 1, (
                f"ERROR: the walg daemon at {socket_path} did not answer within "
                f"{ANSWER_TIMEOUT:.0f} s\nHINT: check the daemon's log; PostgreSQL keeps the "
                "WAL file and runs archive_command again"
            )
        except OSError as err:
            return 1, _no_answer(socket_path, err.strerror or str(err))
    finally:
        conn.close()
    code, newline, message = answer.decode("utf-8", "replace").partition("\n")
    if not newline or not code.strip().isdigit():
        return 1, _no_answer(socket_path, "it closed the connection")
    return int(code), message


def _no_answer(socket_path: str, why: str) -> str:
    return (
        f"ERROR: the walg daemon at {socket_path} stopped before answering ({why})\n"
        "HINT: PostgreSQL keeps the WAL file and runs archive_command again"
    )


def _read_all(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_ANSWER:
        chunk = conn.recv(_MAX_ANSWER)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def fast_path(argv: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """Run ``wal-push`` through the daemon named by WALG_DAEMON_SOCKET, printing its message
    to stderr; the exit code, or None when the caller should run the command itself."""
    socket_path = environ.get(SOCKET_VARIABLE, "")
    if not socket_path or _tried:
        return None
    args = _wal_push_args(argv)
    if args is None:
        return None
    path, config_file = args
    if config_file:
        config_file = os.path.abspath(config_file)
    answer = request(socket_path, path, config_file, environ)
    if answer is None:
        return None
    code, message = answer
    if message:
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
    return code


def console_main() -> int:
    """A ``wal-g`` entry point that tries the daemon before importing ``walg.cli`` (which
    costs ~15 ms of argparse, dataclasses and typing), then runs ``walg.cli.main``."""
    global _tried
    code = fast_path(sys.argv[1:], os.environ)
    if code is not None:
        return code
    _tried = True
    from walg.cli import main

    return main()
