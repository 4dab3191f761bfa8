"""``wal-g daemon SOCKET``: a warm process that serves ``wal-push`` and ``wal-fetch`` over a
unix socket.

A direct ``wal-g wal-push`` spends most of its time starting: the interpreter, walg's
imports, the settings, the storage client. The daemon pays that once; archive_command stays
``wal-g wal-push %p`` with ``WALG_DAEMON_SOCKET=SOCKET`` in its environment, and
:mod:`walg.wal.daemon_client` hands the request over before importing the rest of walg.

Semantics are those of a direct push, because the daemon runs the same
:func:`walg.wal.push.push_wal` (overwrite checks, background uploads, markers) with the
settings and storage it loaded at start: the answer is exit 0 only after push_wal returned,
i.e. after the object is durably stored; any failure is a non-zero exit code and the
ERROR/HINT lines the client prints. Likewise restore_command = ``wal-g wal-fetch %f %p``
with WALG_DAEMON_SOCKET runs :func:`walg.wal.prefetch.fetch_with_prefetch` here: DEST is
in place when the answer is 0, 74 means "not in the archive"; the prefetch of the next
segments runs in a thread of the daemon (into the same ``.wal-g/prefetch`` cache next to
DEST, under the same lock), not in a forked process. The daemon writes DEST as its own
user: run it as the user PostgreSQL runs as. The client falls back to a direct push only when no
daemon accepts its connection; once a request is sent, the daemon's answer (or a non-zero
exit if none comes) is final, and PostgreSQL retries as usual.

Settings: the client sends its walg settings (its WALG_*, WALE_*, AWS_* but credentials,
GOOGLE_*, STORAGE_EMULATOR_HOST variables, HOME and ``--config`` for the config file); the
daemon loads them as ``walg.config`` would and refuses (exit 2, an ERROR naming the
settings) a request configured for none, for another storage (prefix, endpoint:
:meth:`Settings.storage_identity`), or with any other setting that changes how data is
stored or read (:func:`walg.config.compare.differences`: compression, encryption key,
overwrite prevention, S3 storage class and server-side encryption), rather than serve it
with its own settings. Settings that change neither (concurrency, rate limits, logging,
credentials) are the daemon's own. So run the daemon with the cluster's archive_command
configuration.

WAL-G's protocol too: a connection whose first byte is one of WAL-G's message types
(``walg-daemon-client SOCKET wal-push %f``, WAL-G's walg_archive extension) is served by
:mod:`walg.wal.daemon_walg` with the daemon's own settings (WAL-G's client sends none).

Each wal-push served (either protocol) is bounded by WALG_DAEMON_WAL_UPLOAD_TIMEOUT
(default 60s, as WAL-G's daemon): past it the upload is cancelled, nothing is stored, and
the answer is a failure naming the limit (exit 1, or ``E``). wal-fetch has no such limit.

The socket is created mode 0600 (the daemon's user only). A start is refused while a live
daemon answers on the socket, or while another daemon holds ``SOCKET.lock`` (an flock; the
file is left in place); a stale socket file is removed. SIGTERM/SIGINT stop accepting,
remove the socket, and wait up to STOP_GRACE for requests in flight (a second signal stops
at once); a request still running when the process exits is answered by EOF, which the
client reports as a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import stat
import threading
import time
from typing import TYPE_CHECKING, Final

from walg.errors import (
    EX_GENERAL,
    EX_NOT_FOUND,
    Cancelled,
    ConfigError,
    WalgError,
    local_file_error,
)
from walg.logs import get_logger
from walg.wal import daemon_walg
from walg.wal.daemon_client import MAGIC, STEP_ASIDE, is_sent
from walg.wal.prefetch import fetch_with_prefetch, spawn_thread
from walg.wal.push import push_wal

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.storage import Storage

__all__ = ["MAX_CLIENTS", "STOP_GRACE", "WalDaemon", "format_error", "serve"]

MAX_CLIENTS: Final = 8
"""Requests served at once; more connections wait in the listen backlog."""
STOP_GRACE: Final = 60.0
"""Seconds a stopping daemon waits for requests in flight."""
_READ_TIMEOUT: Final = 30.0
_FETCH_ARGUMENTS: Final = ("@name", "@prefetch", "@credentials")
_MAX_REQUEST: Final = 1 << 16
_POLL: Final = 0.2

_log = get_logger("walg.daemon")


def format_error(err: WalgError) -> str:
    """The ERROR/HINT lines ``walg.cli`` prints for ``err``."""
    return f"ERROR: {err.msg}" + (f"\nHINT: {err.hint}" if err.hint else "")


class _BadRequest(WalgError):
    exit_code = 2


class WalDaemon:
    """Serves wal-push requests on ``socket_path`` with one settings and storage."""

    speaks_walg: bool = True  # WAL-G's protocol too (the background worker does not)
    upload_limited: bool = True  # WALG_DAEMON_WAL_UPLOAD_TIMEOUT bounds each push served

    def __init__(self, settings: Settings, socket_path: str, storage: Storage | None = None):
        self.settings = settings
        self.socket_path = os.path.abspath(socket_path)
        self._path = socket_path  # as given: a background worker binds a relative name
        self.identity = settings.storage_identity()
        if storage is None:
            from walg.storage import open_storage

            storage = open_storage(settings)
        self.storage = storage
        self.stop = threading.Event()
        self.force = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None

    # -- start and stop ------------------------------------------------------------------

    def bind(self, lock_fd: int | None = None) -> None:
        """Take the lock (or use ``lock_fd``, holding it already), remove a stale socket
        file, and listen (mode 0600)."""
        path = self._path
        if lock_fd is None:
            lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                raise ConfigError(
                    f"another walg daemon is running on {self.socket_path} (it holds "
                    f"{self.socket_path}.lock)",
                    hint="stop it first, or give this daemon another socket path",
                ) from None
        self._lock_fd = lock_fd
        self._remove_stale(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(path)
        except OSError as err:
            listener.close()
            raise ConfigError(f"cannot listen on {path}: {err.strerror}") from err
        finally:
            os.umask(old_umask)
        listener.listen(64)
        listener.settimeout(_POLL)
        info = os.stat(path)
        self._inode = (info.st_dev, info.st_ino)
        self._listener = listener

    @staticmethod
    def _remove_stale(path: str) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ConfigError(
                f"{path} exists and is not a socket; not removing it",
                hint="give the daemon a socket path that is free",
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except OSError:  # refused: nobody listens, the file is stale
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        finally:
            probe.close()
        raise ConfigError(
            f"a daemon already answers on {path}",
            hint="stop it first, or give this daemon another socket path",
        )

    def close(self) -> None:
        """Stop listening and remove the socket file (if it is still ours)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.owns_socket():
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def owns_socket(self) -> bool:
        """Whether the socket file is still the one this daemon bound (not removed or
        replaced)."""
        try:
            info = os.stat(self._path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._inode

    # -- serving -------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept and serve requests until ``stop`` is set; then wait for those in flight."""
        assert self._listener is not None, "bind() first"
        _log.info("daemon: listening", socket=self.socket_path, storage=self.identity)
        while not self.stop.is_set():
            if not self._slots.acquire(timeout=_POLL):
                continue
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                self._slots.release()
                continue
            except OSError:
                self._slots.release()
                if self.stop.is_set():
                    break
                raise
            thread = threading.Thread(target=self._serve_one, args=(conn,), daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()
        self.close()
        self._drain()

    def _drain(self) -> None:
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and not self.force.is_set():
            with self._lock:
                if not self._threads:
                    return
            time.sleep(0.05)
        with self._lock:
            left = len(self._threads)
        if left:
            _log.warning("daemon: stopping with requests in flight", requests=left)

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self.speaks_walg and daemon_walg.is_walg_protocol(conn):  # WAL-G's client
                    daemon_walg.serve(conn, self)
                    return
                code, message = self._answer(conn)
                with contextlib.suppress(OSError):  # the client gave up; PostgreSQL retries
                    conn.sendall(f"{code}\n{message}".encode("utf-8", "replace"))
        finally:
            self._slots.release()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _answer(self, conn: socket.socket) -> tuple[int | str, str]:
        """Run one request; its exit code (or STEP_ASIDE) and ERROR/HINT lines."""
        path, command = "?", "request"
        try:
            command, path, config_file, env = _read_request(conn)
            if not self._check_settings(command, config_file, env):
                return STEP_ASIDE, ""
            if command == "wal-push":
                self._push(path)
            else:
                self._fetch(env["@name"], path, env["@prefetch"] == "1")
        except Exception as err:
            return self._failure(command, path, err)
        return 0, ""

    def _failure(self, command: str, path: str, err: Exception) -> tuple[int, str]:
        """The exit code and ERROR/HINT lines of a request that raised ``err`` (logged)."""
        if isinstance(err, WalgError):
            if err.exit_code != EX_NOT_FOUND:
                _log.warning(f"daemon: {command} failed", file=path, error=err.msg)
            return err.exit_code, format_error(err)
        if isinstance(err, OSError):  # the host's file system (EACCES, ENOSPC...), not a bug
            local = local_file_error(err)
            _log.warning(f"daemon: {command} failed", file=path, error=local.msg)
            return local.exit_code, format_error(local)
        _log.error(f"daemon: {command} failed", file=path, exc_info=err)
        return EX_GENERAL, (
            f"ERROR: internal error in the walg daemon: {type(err).__name__}: {err}\n"
            "HINT: this is a bug in walg; see the daemon's log for the traceback"
        )

    def _push(self, path: str) -> None:
        """wal-push of the file at ``path``; returns once it is stored. As WAL-G's daemon,
        each push (either protocol) gets WALG_DAEMON_WAL_UPLOAD_TIMEOUT: past it, its
        uploads stop at their next chunk and their puts are aborted (nothing partial is
        stored), and the push fails naming the limit."""
        limit = self.settings.wal.daemon_upload_timeout if self.upload_limited else 0.0
        if limit <= 0:
            result = push_wal(self.settings, path, storage=self.storage)
        else:
            cancel, expired = threading.Event(), threading.Event()

            def expire() -> None:
                expired.set()
                cancel.set()

            timer = threading.Timer(limit, expire)
            timer.daemon = True
            timer.start()
            try:
                result = push_wal(self.settings, path, storage=self.storage, cancel=cancel)
            except Cancelled as err:
                if not expired.is_set():
                    raise
                raise WalgError(
                    f"wal-push of {path} cancelled: it ran longer than "
                    f"WALG_DAEMON_WAL_UPLOAD_TIMEOUT ({limit:g}s); nothing was archived",
                    hint="raise WALG_DAEMON_WAL_UPLOAD_TIMEOUT for the daemon, or check the "
                    "storage's speed; PostgreSQL runs archive_command again",
                ) from err
            finally:
                timer.cancel()
        if self.settings.log.levelno <= 10:
            _log.debug("daemon: wal-push done", file=path, outcome=result.outcome.value)

    def _fetch(self, name: str, destination: str, prefetch: bool) -> None:
        """wal-fetch of ``name`` to ``destination``; returns once it is in place."""
        fetch_with_prefetch(
            self.settings, name, destination, prefetch, storage=self.storage, spawn=spawn_thread
        )
        if self.settings.log.levelno <= 10:
            _log.debug("daemon: wal-fetch done", file=destination, segment=name)

    def _check_settings(self, command: str, config_file: str, env: dict[str, str]) -> bool:
        """ConfigError unless the client's settings store and read the data as the daemon's;
        True (a background worker returns False to step aside instead)."""
        from walg import config
        from walg.config.compare import differences

        try:
            client = config.load(env, config_file or config.find_default_config_file(env))
            differ = differences(self.settings, client, writes=command == "wal-push")
        except WalgError as err:
            raise ConfigError(
                f"the walg daemon cannot tell which storage this {command} is configured for: "
                f"{err.msg}",
                hint=err.hint
                or "configure the same WALG_*_PREFIX for archive_command as for the daemon",
            ) from err
        if differ == ["storage"]:
            raise ConfigError(
                f"the walg daemon at {self.socket_path} archives to {self.identity}, "
                f"but this {command} is configured for {client.storage_identity()}",
                hint="point WALG_DAEMON_SOCKET at a daemon for that storage, "
                f"or unset it to run {command} directly",
            )
        if differ:
            raise ConfigError(
                f"the walg daemon at {self.socket_path} runs with other settings than this "
                f"{command}: {', '.join(differ)} differ{'s' if len(differ) == 1 else ''}",
                hint="start the daemon with the same settings as archive_command and "
                f"restore_command, or unset WALG_DAEMON_SOCKET to run {command} directly",
            )
        return True


def _read_request(conn: socket.socket) -> tuple[str, str, str, dict[str, str]]:
    """``(command, path, config file, settings variables and @arguments)`` of a request
    (see daemon_client)."""
    conn.settimeout(_READ_TIMEOUT)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(_MAX_REQUEST)
        if not chunk:
            break
        size += len(chunk)
        if size > _MAX_REQUEST:
            raise _BadRequest("request too large")
        chunks.append(chunk)
    fields = b"".join(chunks).decode("utf-8", "surrogateescape").split("\0")
    if len(fields) < 4 or fields[0] != MAGIC:
        raise _BadRequest(
            "the walg daemon does not understand this request",
            hint="use the same walg version for the daemon and archive_command",
        )
    _, command, path, config_file, *variables = fields
    if command not in ("wal-push", "wal-fetch"):
        raise _BadRequest(f"the walg daemon serves wal-push and wal-fetch, not {command!r}")
    if not os.path.isabs(path):
        raise _BadRequest(f"the walg daemon needs an absolute path, not {path!r}")
    env: dict[str, str] = {}
    for item in variables:
        name, equals, value = item.partition("=")
        if equals and (is_sent(name) or name in _FETCH_ARGUMENTS):
            env[name] = value
    if command == "wal-fetch":
        name = env.get("@name", "")
        if env.get("@prefetch") not in ("0", "1") or not name or "/" in name:
            raise _BadRequest("a wal-fetch request needs @name=<WAL file> and @prefetch=0|1")
    return command, path, config_file, env


def serve(settings: Settings, socket_path: str) -> int:
    """Run the daemon until SIGTERM/SIGINT; 0 after a clean stop."""
    daemon = WalDaemon(settings, socket_path)
    daemon.bind()

    def on_signal(signum: int, _frame: object) -> None:
        if daemon.stop.is_set():
            daemon.force.set()
        daemon.stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.serve_forever()
    finally:
        daemon.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _log.info("daemon: stopped", socket=daemon.socket_path)
    return 0
