"""``walg-daemon-client``: WAL-G's lightweight client of ``wal-g daemon``, and the framing
of WAL-G's daemon protocol (shared with the server side, :mod:`walg.wal.daemon_walg`).

Command line, as WAL-G's ``cmd/daemonclient``::

    walg-daemon-client SOCKET wal-push WAL_FILE [-timeout D] [-connection-timeout D]
    walg-daemon-client SOCKET wal-fetch WAL_NAME DESTINATION [-timeout D] [...]
    walg-daemon-client --version

so ``archive_command = 'walg-daemon-client SOCKET wal-push %f'`` and ``restore_command =
'walg-daemon-client SOCKET wal-fetch %f %p'``. Flags follow the arguments, in Go's flag
syntax, with Go durations (``-timeout 90s``, ``--connection-timeout=1m``); defaults 60s for
the whole operation and 5s to connect. Exit codes: 0 when the daemon answered ok, 74 when
wal-fetch's file is not in the archive, 1 otherwise (usage, no socket, timeout, error).

The protocol (WAL-G's ``internal/daemon``): a message is a type byte, a big-endian uint16
length that counts the 3 header bytes, and the body. ``C`` (check; body ignored) is answered
``O`` and the connection stays open; ``F`` (wal-push) carries the WAL file name, ``f``
(wal-fetch) two arguments, each a uint16 length and bytes, after a count byte. The answer is
one byte: ``O`` ok, ``N`` not in the archive (wal-fetch), ``E`` error; the daemon then closes
the connection. Bodies name files relative to the daemon's PGDATA (``F``: in ``pg_wal``).

Like :mod:`walg.wal.daemon_client`, this imports only small built-in modules: it runs once
per WAL segment.
"""

from __future__ import annotations

import os
import sys

from walg.wal.daemon_client import connect_unix

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms on this path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

__all__ = [
    "CHECK",
    "ERROR",
    "EX_NOT_FOUND",
    "FETCH",
    "NOT_FOUND",
    "OK",
    "PUSH",
    "ProtocolError",
    "decode_args",
    "encode_args",
    "encode_message",
    "main",
    "parse_duration",
]

CHECK: Final = b"C"
PUSH: Final = b"F"
FETCH: Final = b"f"
OK: Final = b"O"
ERROR: Final = b"E"
NOT_FOUND: Final = b"N"
EX_NOT_FOUND: Final = 74  # EX_IOERR, as WAL-G's client (constants.ExIoError)
_MAX: Final = 0xFFFF
_COMMANDS: Final = {"wal-push": (PUSH, ("wal_filepath",)),
                    "wal-fetch": (FETCH, ("wal_name", "destination_filename"))}
_FLAGS: Final = {"timeout": (60.0, "daemon operation execution timeout", "1m0s"),
                 "connection-timeout": (5.0, "daemon socket connection timeout", "5s")}


class ProtocolError(Exception):
    """A message that cannot be framed or parsed; a command line WAL-G's client refuses."""


def encode_args(args: Sequence[bytes]) -> bytes:
    """A count byte, then each argument as a big-endian uint16 length and its bytes."""
    if len(args) > 255:
        raise ProtocolError("unsupported args count")
    out = bytearray((len(args),))
    for arg in args:
        if len(arg) > _MAX:
            raise ProtocolError("unsupported arg size")
        out += len(arg).to_bytes(2, "big") + arg
    return bytes(out)


def decode_args(body: bytes) -> list[bytes]:
    """The arguments of :func:`encode_args`; ProtocolError unless ``body`` is exactly that."""
    if not body:
        raise ProtocolError("corrupted message body")
    args, at = [], 1
    for _ in range(body[0]):
        size = int.from_bytes(body[at : at + 2], "big")
        if at + 2 > len(body) or at + 2 + size > len(body):
            raise ProtocolError("corrupted message body")
        args.append(body[at + 2 : at + 2 + size])
        at += 2 + size
    if at != len(body):
        raise ProtocolError("corrupted message body")
    return args


def encode_message(kind: bytes, args: Sequence[bytes]) -> bytes:
    """A message of type ``kind``: one argument is the body itself, more are encoded."""
    body = args[0] if len(args) == 1 else encode_args(args) if args else b""
    if len(body) + 3 > _MAX:
        raise ProtocolError(
            f"unsupported arg size: message length {len(body) + 3} exceeds uint16 max"
        )
    return kind + (len(body) + 3).to_bytes(2, "big") + body


_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration (``1m30s``, ``500ms``, ``-2s``, ``0``); ValueError if not one."""
    rest, sign = text, 1.0
    if rest[:1] in ("-", "+"):
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(text)
    total = 0.0
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, rest = rest[:i], rest[i:]
        j = 0
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        unit, rest = rest[:j], rest[j:]
        if number in ("", ".") or number.count(".") > 1 or unit not in _UNITS:
            raise ValueError(text)
        total += float(number) * _UNITS[unit]
    return sign * total


def _parse_flags(args: Sequence[str]) -> dict[str, float]:
    """Go's flag.Parse of ``args`` (stops at the first non-flag); ProtocolError if bad."""
    values = {name: default for name, (default, _, _) in _FLAGS.items()}
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        word = rest.pop(0)
        if word == "--":
            break
        name = word[2:] if word.startswith("--") else word[1:]
        if not name or name[0] in "-=":
            raise ProtocolError(f"bad flag syntax: {word}")
        name, equals, value = name.partition("=")
        if name in ("h", "help"):
            raise ProtocolError("flag: help requested")
        if name not in _FLAGS:
            raise ProtocolError(f"flag provided but not defined: -{name}")
        if not equals:
            if not rest:
                raise ProtocolError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        try:
            values[name] = parse_duration(value)
        except ValueError:
            raise ProtocolError(f'invalid value "{value}" for flag -{name}: parse error') from None
    return values


_USAGE: Final = """Error: {error}

walg-daemon-client is lightweight client for WAL-G daemon

Usage:
  walg-daemon-client socket {usage} [flags]
{arguments}
Flags:
"""
_ARGUMENTS: Final = """
Arguments:
  socket\t- name of unix socket to communicate with wal-g daemon
  command\t- command to send to the daemon: wal-push, wal-fetch
  command_args\t- command specific arguments
"""


def _usage(error: str, command: str = "") -> int:
    """WAL-G's usage text on stdout, the flags on stderr; exit code 1."""
    args = " ".join(_COMMANDS[command][1]) if command else ""
    usage = f"{command} {args}" if command else "command [command_args]"
    sys.stdout.write(_USAGE.format(error=error, usage=usage,
                                   arguments="" if command else _ARGUMENTS))
    sys.stdout.flush()
    for name, (_, text, shown) in sorted(_FLAGS.items()):
        sys.stderr.write(f"  -{name} duration\n    \t{text} (default {shown})\n")
    return 1


def _fatal(message: str) -> int:
    """Go's log.Fatal: a dated line on stderr, exit code 1."""
    import time

    sys.stderr.write(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}\n")
    return 1


def _send(path: str, message: bytes, timeouts: dict[str, float]) -> bytes:
    """Connect, send ``message``, read the one-byte answer; OSError (or TimeoutError)."""
    import _socket
    import time

    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if timeouts["connection-timeout"] <= 0:
            raise TimeoutError("context deadline exceeded")
        conn.settimeout(timeouts["connection-timeout"])
        connect_unix(conn, path)
        deadline = time.monotonic() + timeouts["timeout"]

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("i/o timeout")
            return left

        conn.settimeout(remaining())
        conn.sendall(message)
        conn.settimeout(remaining())
        answer: bytes = conn.recv(1)
    finally:
        conn.close()
    if not answer:
        raise EOFError("EOF")
    return answer


def main(argv: Sequence[str]) -> int:
    """``walg-daemon-client ARGS``; the exit code (see the module docstring)."""
    if argv and argv[0].lower() == "--version":
        from walg import __version__

        print(f"walg-daemon-client\t{__version__}\twalg\tpython")
        return 0
    if len(argv) < 2:
        return _usage("not enough arguments")
    path, command = argv[0], argv[1].lower()
    if command not in _COMMANDS:
        return _usage(f"unsupported command {command}")
    kind, names = _COMMANDS[command]
    if len(argv) < 2 + len(names):
        return _usage("not enough command arguments", command)
    args = list(argv[2 : 2 + len(names)])
    try:
        timeouts = _parse_flags(argv[2 + len(names) :])
    except ProtocolError as err:
        return _usage(str(err))
    try:
        os.stat(path)
    except OSError as err:
        return _fatal(f"daemon socket '{path}' doesn't exist or is unavailable:\n\t{err}")
    described = f"[message type: {kind.decode()}, args: [{' '.join(args)}]"
    try:
        message = encode_message(kind, [os.fsencode(arg) for arg in args])
        answer = _send(path, message, timeouts)
    except ProtocolError as err:
        return _fatal(str(err))
    except (OSError, EOFError) as err:
        return _fatal(f"unix socket error: {err} {described}]")
    if answer == OK:
        return 0
    error = f"daemon command run error {described}, daemon response: {answer.decode('latin-1')}]"
    if answer == NOT_FOUND:
        print(error)
        return EX_NOT_FOUND
    return _fatal(error)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
