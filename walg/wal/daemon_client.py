"""The client side of ``wal-g daemon``: hand a ``wal-push`` or ``wal-fetch`` to a running
daemon.

``walg.cli.main`` calls :func:`fast_path` before anything else. When the command line is
``wal-g [--config FILE] wal-push PATH`` or ``wal-g [--config FILE] wal-fetch
[--no-prefetch] NAME DEST``, the request goes to

- the daemon listening on ``WALG_DAEMON_SOCKET``, when that is set; its answer (exit code,
  ERROR/HINT lines) is this process's. If no daemon is there (no socket file, connection
  refused), ``fast_path`` returns None and the caller runs the command itself;
- otherwise the cluster's background worker (:mod:`walg.wal.background`), listening on
  ``walg_data/walg.sock`` in the directory of PATH or DEST (pg_wal), if its socket file
  exists. The worker is an optimisation the command started itself, so anything short of
  an answer (no worker, a worker of another user, one that died before answering, one that
  steps aside because the settings changed) returns None: the caller then runs the
  command itself, as if there were no worker. Running it again is safe: a push of a
  stored segment stores the same bytes, a fetch writes DEST again.

This module imports only ``os``, ``_socket`` and ``sys``: it runs once per WAL segment, and
what it saves is exactly the start-up time of the rest of walg.

The protocol (one request per connection; see :mod:`walg.wal.daemon`):

- request: NUL-separated UTF-8 fields, then the client shuts down its writing side::

      walg-daemon/2 \\0 wal-push \\0 <absolute path> \\0 <--config file or empty>
      \\0 NAME=VALUE ...   (the client's walg settings, see is_sent, and HOME)

  For ``wal-fetch`` the path is the absolute DEST, and two arguments follow the config
  file: ``@name=<WAL file name>`` and ``@prefetch=1`` (or ``0`` for ``--no-prefetch``).

  The daemon loads these as ``walg.config`` would and refuses (exit 2) a request whose
  settings would store or read the data otherwise than its own (:mod:`walg.config.compare`).
  They include secrets (a PGP key, its passphrase): the client sends them only to a daemon
  running as its own user (SO_PEERCRED), which could read them from this process's
  environment anyway; the socket is mode 0600. AWS credentials are not sent: they change
  neither where nor how data is stored, so the daemon does not compare them.

- answer: ``<exit code>\\n<message>`` (the message is the ERROR/HINT lines, or empty), then
  the daemon closes the connection. No answer at all (EOF) means the daemon stopped first.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms on this path
if TYPE_CHECKING:
    import _socket
    from collections.abc import Mapping, Sequence
    from typing import Final

__all__ = [
    "ANSWER_TIMEOUT",
    "BACKGROUND_SOCKET",
    "CONNECT_TIMEOUT",
    "MAGIC",
    "SOCKET_VARIABLE",
    "STEP_ASIDE",
    "credentials_digest",
    "fast_path",
    "is_sent",
    "request",
]

SOCKET_VARIABLE: Final = "WALG_DAEMON_SOCKET"
BACKGROUND_SOCKET: Final = os.path.join("walg_data", "walg.sock")
"""The background worker's socket, relative to the WAL directory (pg_wal)."""
STEP_ASIDE: Final = "pass"
"""A background worker's answer instead of an exit code: run the command yourself."""
STARTING_WAIT: Final = 1.0
"""Seconds a call waits for a background worker that is starting to listen."""
_LONG_PATH: Final = 100
_PG_READY_RENAME: Final = frozenset(
    ["--pg-ready-rename"]
    + [f"--pg-ready-rename={v}" for v in ("1", "t", "T", "TRUE", "true", "True")]
    + [f"--pg-ready-rename={v}" for v in ("0", "f", "F", "FALSE", "false", "False")]
)  # sun_path holds 108 bytes; longer paths go through /proc/self/fd
MAGIC: Final = "walg-daemon/2"  # 2: the client sends all its walg settings
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to wait for the daemon to accept; longer, and the client pushes directly."""
ANSWER_TIMEOUT: Final = 600.0
"""Seconds to wait for the answer (a huge file on a slow network); never forever."""
SENT_PREFIXES: Final = ("WALG_", "WALE_", "AWS_", "S3_", "GOOGLE_", "STORAGE_EMULATOR_HOST")
"""Names of the variables the client sends (the settings walg's config reads, except PG*)."""
NOT_SENT: Final = frozenset(
    (
        "AWS_ACCESS_KEY_ID",
        "AWS_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    )
)
"""Credentials: the daemon does not compare them (they rotate; they say nothing of where)."""


def is_sent(name: str) -> bool:
    """Whether the client sends variable ``name`` to the daemon: its walg settings (so the
    daemon can refuse a request configured otherwise), HOME and WALG_CONFIG_PATH (to find
    the config file)."""
    return name == "HOME" or (name.startswith(SENT_PREFIXES) and name not in NOT_SENT)


_MAX_ANSWER: Final = 1 << 16


def credentials_digest(environ: Mapping[str, str]) -> str:
    """A CRC-32 of the credentials in ``environ`` (which are not sent): a background worker
    steps aside when they differ from its own (they were rotated), without seeing them."""
    import zlib

    text = "\0".join(f"{name}={environ.get(name, '')}" for name in sorted(NOT_SENT))
    return f"{zlib.crc32(text.encode('utf-8', 'surrogateescape')):08x}"


def connect_unix(conn: _socket.socket, path: str) -> None:
    """``conn.connect(path)``, through ``/proc/self/fd`` when ``path`` is too long for a
    unix socket address."""
    if len(path) <= _LONG_PATH:
        conn.connect(path)
        return
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        conn.connect(f"/proc/self/fd/{directory}/{os.path.basename(path)}")
    finally:
        os.close(directory)


def _command_args(argv: Sequence[str]) -> tuple[str, list[str], str] | None:
    """``(command, its arguments, config file or "")`` for the command lines the daemon
    serves: ``wal-push PATH`` and ``wal-fetch [--no-prefetch] NAME DEST``, with one
    ``--config FILE`` (or ``--config=FILE``) before or after the command word, as cobra
    takes it; else None (``--turbo`` too: that call runs alone, without the limits)."""
    args = list(argv)
    config_file = ""
    for index, word in enumerate(args):
        if word == "--":
            break
        if word == "--config" and index + 1 < len(args):
            config_file = args[index + 1]
            del args[index : index + 2]
            break
        if word.startswith("--config="):
            config_file = word.partition("=")[2]
            del args[index]
            break
    if not args or args[0] not in ("wal-push", "wal-fetch"):
        return None
    command, rest = args[0], args[1:]
    if command == "wal-push":  # WAL-G's --pg-ready-rename changes nothing in walg
        rest = [a for a in rest if a not in _PG_READY_RENAME]
    no_prefetch = command == "wal-fetch" and rest[:1] == ["--no-prefetch"]
    plain = rest[1:] if no_prefetch else rest
    wanted = 1 if command == "wal-push" else 2
    if len(plain) != wanted or any(not a or a.startswith("-") for a in plain):
        return None
    return command, rest, config_file


def request(
    socket_path: str,
    path: str,
    config_file: str,
    environ: Mapping[str, str],
    command: str = "wal-push",
    arguments: Sequence[str] = (),
    background: bool = False,
) -> tuple[int, str] | None:
    """Ask the daemon at ``socket_path`` to run ``command`` on ``path`` (wal-push: the
    file; wal-fetch: DEST, with ``@name=``/``@prefetch=`` ``arguments``): ``(exit code,
    message)``, or None when no daemon accepts the connection (the caller then runs the
    command itself). For a ``background`` worker, also None when it gives no answer."""
    fields = [MAGIC, command, os.path.abspath(path), config_file, *arguments]
    fields.append(f"@credentials={credentials_digest(environ)}")
    fields += [f"{name}={value}" for name, value in environ.items() if is_sent(name)]
    payload = "\0".join(fields).encode("utf-8", "surrogateescape")
    # The C module, not ``socket``: its enums and selectors cost ~3 ms on every call.
    import _socket

    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT)
        try:
            connect_unix(conn, socket_path)
        except OSError:  # no socket file, nobody listening, backlog full: push directly
            return None
        stranger = _stranger(conn, socket_path)
        if stranger:
            return None if background else (2, stranger)
        conn.settimeout(ANSWER_TIMEOUT)
        try:
            conn.sendall(payload)
            conn.shutdown(_socket.SHUT_WR)
            answer = _read_all(conn)
        except TimeoutError:
            return 1, (
                f"ERROR: the walg daemon at {socket_path} did not answer within "
                f"{ANSWER_TIMEOUT:.0f} s\nHINT: check the daemon's log; PostgreSQL runs "
                "the command again"
            )
        except OSError as err:
            return None if background else (1, _no_answer(socket_path, err.strerror or str(err)))
    finally:
        conn.close()
    code, newline, message = answer.decode("utf-8", "replace").partition("\n")
    if not newline or not code.strip().isdigit():
        if background:  # it died before answering, or stepped aside: run the command here
            return None
        return 1, _no_answer(socket_path, "it closed the connection")
    return int(code), message


def print_answer(message: str, fmt: str | None) -> None:
    """Write the daemon's ERROR/HINT lines as this process writes its own (WALG_LOG_FORMAT):
    each ERROR with the HINT after it as one event."""
    from walg import logs

    logs.set_format(fmt)
    events: list[list[str]] = []
    for line in message.splitlines():
        label, _, text = line.partition(": ")
        if label == "HINT" and events and len(events[-1]) == 1:
            events[-1].append(text)
        elif line.strip():
            events.append([text if label == "ERROR" else line])
    for event in events:
        logs.write_error(event[0], event[1] if len(event) > 1 else None)


def _stranger(conn: _socket.socket, socket_path: str) -> str:
    """The ERROR/HINT lines if the process listening on ``socket_path`` runs as another
    user (it would be handed this user's settings and trusted with its WAL); else ""."""
    import _socket

    option = getattr(_socket, "SO_PEERCRED", None)
    if option is None:  # not Linux: the socket's own mode (0600) is the guard
        return ""
    uid = int.from_bytes(conn.getsockopt(_socket.SOL_SOCKET, option, 12)[4:8], sys.byteorder)
    if uid == os.getuid():
        return ""
    return (
        f"ERROR: the process listening on {socket_path} runs as user ID {uid}, not as this "
        f"user ({os.getuid()}); nothing was sent to it\nHINT: run `wal-g daemon` as the "
        "user PostgreSQL runs as, or unset WALG_DAEMON_SOCKET"
    )


def _no_answer(socket_path: str, why: str) -> str:
    return (
        f"ERROR: the walg daemon at {socket_path} stopped before answering ({why})\n"
        "HINT: PostgreSQL runs the command again (archive_command keeps the WAL file)"
    )


def _read_all(conn: _socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_ANSWER:
        chunk = conn.recv(_MAX_ANSWER)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _await_starting(socket_path: str) -> bool:
    """Whether a background worker that is starting (its lock held and written moments ago,
    no socket yet) begins listening on ``socket_path`` within STARTING_WAIT: a call right
    after the one that started it then need not work alone."""
    import fcntl
    import time

    try:
        fd = os.open(socket_path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if time.time() - os.fstat(fd).st_mtime > STARTING_WAIT:
            return False  # an old lock: a worker that is stopping, or none
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: the worker is alive
        else:
            return False
    finally:
        os.close(fd)
    deadline = time.monotonic() + STARTING_WAIT
    while time.monotonic() < deadline:
        if os.path.exists(socket_path):
            return True
        time.sleep(0.005)
    return False


def fast_path(argv: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """Run ``wal-push`` or ``wal-fetch`` through the daemon named by WALG_DAEMON_SOCKET,
    printing its message to stderr; the exit code, or None when the caller should run the
    command itself."""
    parsed = _command_args(argv)
    if parsed is None:
        return None
    command, args, config_file = parsed
    socket_path = environ.get(SOCKET_VARIABLE, "")
    background = not socket_path
    if background:
        socket_path = os.path.join(os.path.dirname(args[-1]), BACKGROUND_SOCKET)
        if not os.path.exists(socket_path) and not _await_starting(socket_path):
            return None
    if config_file:
        config_file = os.path.abspath(config_file)
    if command == "wal-push":
        answer = request(socket_path, args[0], config_file, environ, background=background)
    else:
        prefetch = "0" if args[0] == "--no-prefetch" else "1"
        name, destination = args[-2:]
        extra = [f"@name={name}", f"@prefetch={prefetch}"]
        answer = request(
            socket_path, destination, config_file, environ, command, extra, background
        )
    if answer is None:
        return None
    code, message = answer
    if message:
        print_answer(message, environ.get("WALG_LOG_FORMAT"))
    if command == "wal-fetch":  # as a direct wal-fetch: recovery must not end on a failure
        from walg.wal.restore_exit import restore_command_exit

        return restore_command_exit(argv, code)
    return code
