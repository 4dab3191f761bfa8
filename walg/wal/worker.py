"""The background worker process of :mod:`walg.wal.background`: a ``wal-g daemon`` on the
cluster's own socket that uploads ready segments ahead, steps aside for a request
configured otherwise, and exits when idle. How it is started, and why: see that module.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, TextIO, cast

from walg.errors import Cancelled, StorageUnreachable, WalgError
from walg.logs import get_logger
from walg.wal.daemon import WalDaemon
from walg.wal.daemon_client import BACKGROUND_SOCKET, credentials_digest, is_sent
from walg.wal.push import AheadUploader, push_wal

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.storage import Storage

__all__ = ["LOG_NAME", "RETRY_AFTER", "BackgroundWorker", "Baseline", "run_worker"]

LOG_NAME: Final = "walg_background.log"
_LOG_LIMIT: Final = 1 << 20
RETRY_AFTER: Final = 10.0
"""Seconds before an upload ahead that failed is tried again by the worker."""
_ARCHIVED_KEPT: Final = 256
_TICK: Final = 0.01  # how often the worker looks for newly ready segments

_log = get_logger("walg.wal.background")


class Baseline:
    """What a request must match to be served: the sent variables, the config file
    (its name and state) and the credentials' digest of the call that started the worker."""

    def __init__(self, config_file: str, environ: Mapping[str, str]) -> None:
        self.config_file = config_file
        self.sent = {name: value for name, value in environ.items() if is_sent(name)}
        self.credentials = credentials_digest(environ)
        self.config_state = _file_state(self._effective_config(self.sent))

    def _effective_config(self, env: Mapping[str, str]) -> str | None:
        from walg import config

        return self.config_file or config.find_default_config_file(env)

    def matches(self, config_file: str, env: Mapping[str, str]) -> bool:
        sent = {name: value for name, value in env.items() if is_sent(name)}
        return (
            config_file == self.config_file
            and sent == self.sent
            and env.get("@credentials") == self.credentials
            and _file_state(self._effective_config(sent)) == self.config_state
        )


def _file_state(path: str | None) -> tuple[int, int, int] | None:
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class BackgroundWorker(WalDaemon):
    """The worker of one pg_wal directory (see the module docstring)."""

    speaks_walg = False  # only walg's own client, which sends its settings, talks to it
    upload_limited = False  # WALG_DAEMON_WAL_UPLOAD_TIMEOUT is wal-g daemon's, not ours

    def __init__(
        self,
        settings: Settings,
        wal_dir: str,
        baseline: Baseline,
        storage: Storage | None = None,
        *,
        archived: Iterable[str] = (),
        bind_name: str | None = None,
    ) -> None:
        super().__init__(settings, os.path.join(wal_dir, BACKGROUND_SOCKET), storage)
        if bind_name is not None:  # the worker's cwd is the spool: bind by the short name
            self._path = bind_name
        self.wal_dir = os.path.abspath(wal_dir)
        self.baseline = baseline
        self.idle = settings.wal.background_idle
        self.uploader = AheadUploader(settings, self.storage, wal_dir)
        self.width = _upload_width(settings)
        self._busy: dict[str, Future[str]] = {}
        # Segments a request archived: never uploaded again (PostgreSQL may recycle the
        # file as soon as it sees them done).
        self._archived: set[str] = set(archived)
        self._failed: dict[str, float] = {}
        self._busy_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.width, thread_name_prefix="walg-ahead")
        self._last = time.monotonic()
        self._requests = 0

    # -- requests ------------------------------------------------------------------------

    def _check_settings(self, command: str, config_file: str, env: dict[str, str]) -> bool:
        if self.baseline.matches(config_file, env):
            return True
        self._step_aside(f"a {command} configured otherwise arrived")
        return False

    def _serve_one(self, conn: socket.socket) -> None:
        self._touch(+1)
        try:
            super()._serve_one(conn)
        finally:
            self._touch(-1)

    def _push(self, path: str) -> None:
        """Push the file at ``path``; a segment being uploaded ahead is waited for (its
        marker then makes the push a no-op), and none is uploaded ahead while it is pushed
        here or after."""
        name = os.path.basename(path)
        mine: Future[str] | None = None
        if os.path.dirname(os.path.abspath(path)) == self.wal_dir:
            with self._busy_lock:
                running = self._busy.get(name)
                if running is None:
                    mine = self._busy[name] = Future()
            if running is not None:
                try:
                    running.result()
                except StorageUnreachable as err:  # it just spent the retry budget: no second
                    raise StorageUnreachable(f"cannot archive {name}: {err.msg}", err.hint) from err
                except Exception:  # it failed otherwise: push_wal says why
                    pass
        archived = False
        try:
            push_wal(self.settings, path, storage=self.storage, ahead=False,
                     crypter=self.uploader.crypter)  # fmt: skip
            archived = True
        finally:
            with self._busy_lock:
                if mine is not None:
                    del self._busy[name]
                if archived:
                    self._archived.add(name)
            if mine is not None:
                mine.set_result(name)

    def _step_aside(self, why: str) -> None:
        """Stop uploading (cancelled uploads store nothing) and exit soon."""
        if not self.stop.is_set():
            _log.info("background worker: stepping aside", reason=why)
        self.uploader.cancel.set()
        self.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _touch(self, delta: int) -> None:
        with self._busy_lock:
            self._requests += delta
            self._last = time.monotonic()

    # -- uploads ahead and the idle clock -------------------------------------------------

    def run_uploads(self) -> None:
        """Until stopped: start uploads of ready segments; stop when idle too long or when
        the socket file is no longer ours."""
        while not self.stop.wait(_TICK):
            if not self.owns_socket():
                self._step_aside("its socket file was removed or replaced")
                break
            self._start_uploads()
            with self._busy_lock:
                quiet = not self._busy and not self._requests
                idle_for = time.monotonic() - self._last
            if quiet and idle_for > self.idle:
                _log.info("background worker: idle, exiting", idle_seconds=round(idle_for))
                self.stop.set()

    def _start_uploads(self) -> None:
        now = time.monotonic()
        with self._busy_lock:
            free = self.width - len(self._busy)
            if free <= 0:
                return
            self._failed = {n: t for n, t in self._failed.items() if t > now}
        try:
            ready = self.uploader.status.ready()
        except OSError:
            return
        with self._busy_lock:
            if len(self._archived) > _ARCHIVED_KEPT:  # only names still .ready matter
                self._archived &= set(ready)
            skip = set(self._busy) | set(self._failed) | self._archived
        try:
            names = self.uploader.candidates(skip, free, ready)
        except OSError:
            return
        for name in names:
            with self._busy_lock:
                if self.stop.is_set():
                    return
                try:
                    in_flight = len(self._busy) + len(names)
                    future = self._pool.submit(self.uploader.upload, name, in_flight)
                except RuntimeError:  # the pool was shut down: stepping aside
                    return
                self._busy[name] = future
                self._last = now
            future.add_done_callback(functools.partial(self._uploaded, name))

    def _uploaded(self, name: str, done: Future[str]) -> None:
        error = None if done.cancelled() else done.exception()
        with self._busy_lock:
            self._busy.pop(name, None)
            self._last = time.monotonic()
            if error is not None:
                self._failed[name] = self._last + RETRY_AFTER
        if error is None or self.uploader.cancel.is_set():
            return
        message = error.msg if isinstance(error, WalgError) else f"{error}"
        if isinstance(error, Cancelled):  # archived meanwhile (its .ready is gone): not a fault
            _log.debug("background worker: upload ahead not needed", segment=name, why=message)
            return
        _log.warning("background worker: upload ahead failed; retrying later",
                     segment=name, error=message)  # fmt: skip

    def shutdown(self) -> None:
        self.uploader.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.uploader.close()


def _upload_width(settings: Settings) -> int:
    """Uploads at once: WALG_UPLOAD_CONCURRENCY, but no more than the cores on file storage
    (compression is the work there; more threads only delay the segment asked for next)."""
    width = settings.concurrency.upload
    if settings.require_storage().kind == "file":
        width = min(width, os.cpu_count() or 1)
    return max(1, width)


# --- the process ----------------------------------------------------------------------------


def run_worker(
    settings: Settings,
    wal_dir: str,
    baseline: Baseline,
    archived: tuple[str, ...],
    lock: int,
    first: Callable[[], None] | None,
    first_lock: int | None,
) -> int:
    """The worker process's life, in the grandchild of a cold call, holding ``lock``:
    log to the spool, listen, upload ahead and serve until stopped; its exit status."""
    spool = os.path.dirname(os.path.join(wal_dir, BACKGROUND_SOCKET))
    _redirect_output(os.path.join(spool, LOG_NAME))
    from walg import logs

    logs.configure(
        settings.log.level, stream=cast(TextIO, _Unfailing(sys.stderr)), fmt=settings.log.format
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.chdir(spool)  # the socket is bound by its short name: a long PGDATA is no problem
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
    name = os.path.basename(BACKGROUND_SOCKET)
    worker = BackgroundWorker(settings, wal_dir, baseline, archived=archived, bind_name=name)
    try:
        worker.bind(lock_fd=os.dup(lock))
    except WalgError as err:
        _log.warning("background worker: cannot listen", error=err.msg)
        return 1
    _log.info("background worker: started", wal_dir=wal_dir, storage=worker.identity,
              idle_exit_seconds=worker.idle)  # fmt: skip

    def on_signal(signum: int, _frame: object) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if first is not None:
        _run_first(first, first_lock)
    uploads = threading.Thread(target=worker.run_uploads, name="walg-uploads", daemon=True)
    uploads.start()
    try:
        worker.serve_forever()
    finally:
        worker.close()
        worker.shutdown()
        _log.info("background worker: stopped", wal_dir=wal_dir)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
    return 0


def _run_first(first: Callable[[], None], first_lock: int | None) -> None:
    from walg.wal.prefetch import spawn_thread

    if first_lock is None:
        threading.Thread(target=first, name="walg-first", daemon=True).start()
    else:
        spawn_thread(first, first_lock)  # the thread holds a dup of the lock while it works
        os.close(first_lock)  # the cold call's: later prefetches must be able to take it


class _Unfailing(io.TextIOBase):
    """The worker's log stream: a write that fails (pg_wal's disk is full) is dropped
    rather than raised into the request or upload that logged it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def isatty(self) -> bool:
        return False


def _redirect_output(log_file: str) -> None:
    """stdin from /dev/null; stdout and stderr to ``log_file`` (the previous one kept as
    ``.1`` once it reaches 1 MiB): never PostgreSQL's pipes, which a reader would wait on."""
    with contextlib.suppress(OSError):
        if os.stat(log_file).st_size > _LOG_LIMIT:
            os.replace(log_file, log_file + ".1")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
