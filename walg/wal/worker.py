"""The background worker process of :mod:`walg.wal.background`: a ``wal-g daemon`` on the
cluster's own socket that uploads ready segments ahead, steps aside for a request
configured otherwise, and exits when idle. How it is started, and why: see that module.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from walg.errors import WalgError
from walg.logs import get_logger
from walg.wal.daemon import WalDaemon
from walg.wal.daemon_client import BACKGROUND_SOCKET, credentials_digest, is_sent
from walg.wal.push import AheadUploader, push_wal

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.storage import Storage

__all__ = ["RETRY_AFTER", "BackgroundWorker", "Baseline", "lock_path", "socket_path", "worker_pid"]

RETRY_AFTER: Final = 10.0
"""Seconds before an upload ahead that failed is tried again by the worker."""
_TICK: Final = 0.01  # how often the worker looks for newly ready segments

_log = get_logger("walg.wal.background")


def socket_path(wal_dir: str) -> str:
    return os.path.join(wal_dir, BACKGROUND_SOCKET)


def lock_path(wal_dir: str) -> str:
    return socket_path(wal_dir) + ".lock"


def worker_pid(wal_dir: str) -> int | None:
    """The PID of the live worker of ``wal_dir``, or None (for tests and scripts)."""
    try:
        fd = os.open(lock_path(wal_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        return None  # nobody holds it
    finally:
        os.close(fd)


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
        super().__init__(settings, socket_path(wal_dir), storage)
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
                with contextlib.suppress(Exception):  # it failed: push_wal says why
                    running.result()
        try:
            push_wal(self.settings, path, storage=self.storage, ahead=False,
                     crypter=self.uploader.crypter)  # fmt: skip
        finally:
            if mine is not None:
                with self._busy_lock:
                    del self._busy[name]
                    self._archived.add(name)
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
            self._failed = {n: t for n, t in self._failed.items() if t > now}
            skip = set(self._busy) | set(self._failed) | self._archived
            free = self.width - len(self._busy)
        try:
            names = self.uploader.candidates(skip, free)
        except OSError:
            return
        for name in names:
            with self._busy_lock:
                if self.stop.is_set():
                    return
                self._busy[name] = future = self._pool.submit(self.uploader.upload, name)
                self._last = now
            future.add_done_callback(functools.partial(self._uploaded, name))

    def _uploaded(self, name: str, done: Future[str]) -> None:
        error = None if done.cancelled() else done.exception()
        with self._busy_lock:
            self._busy.pop(name, None)
            self._last = time.monotonic()
            if error is not None:
                self._failed[name] = self._last + RETRY_AFTER
        if error is not None and not self.uploader.cancel.is_set():
            message = error.msg if isinstance(error, WalgError) else f"{error}"
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
