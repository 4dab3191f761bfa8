"""The WAL path's background worker: one warm process per cluster that serves wal-push
and wal-fetch, uploads ready segments ahead and prefetches the next ones.

Every archive_command and restore_command call is a new process, and most of its time
goes on starting: the interpreter, walg's imports, the storage client. So the first call
that does its work itself (a "cold" call) starts a worker for its cluster afterwards, on
pgBackRest's archive-async model, with nothing to configure::

    pg_wal/walg_data/walg.sock        the worker's socket (mode 0600, this user only)
    pg_wal/walg_data/walg.sock.lock   flock held by the live worker; its PID inside
    pg_wal/walg_data/walg_background.log   its log (two generations of 1 MiB at most)
    pg_wal/walg_data/walg_archive_status/  "uploaded ahead" markers (walg.wal.markers)

- Later calls hand their request to the worker (:mod:`walg.wal.daemon_client`, which
  imports only ``os``, ``socket`` and ``sys``); the worker runs the same code a cold call
  runs (:func:`walg.wal.push.push_wal`, :func:`walg.wal.prefetch.fetch_with_prefetch`) and
  answers with the exit code, so the guarantees are those of a direct call: wal-push exits
  0 only once its file is durably stored, wal-fetch keeps its exit codes.
- Meanwhile it uploads segments PostgreSQL marked ready (``archive_status/*.ready``), up
  to WALG_UPLOAD_CONCURRENCY at once (the cores' count on file storage, which is CPU
  bound), each marked done once stored; the call for a marked segment returns at once,
  and a call for a segment being uploaded waits for that upload instead of starting
  another. A segment whose upload failed is tried again after RETRY_AFTER; the call for
  it pushes it itself and reports its own error.
- wal-fetch requests prefetch the next WALG_DOWNLOAD_CONCURRENCY segments in its threads.

What keeps it safe:

- one worker per cluster: the flock, taken before the fork and inherited; a second cold
  call finds it held and starts none;
- it runs in its own session (PostgreSQL stopping or restarting does not signal it; it
  keeps serving the restarted server) and never holds PostgreSQL's stdout or stderr;
- it exits after WALG_WAL_BACKGROUND_IDLE without requests or uploads, when its socket
  file is removed or replaced (the cluster was moved or dropped), or on SIGTERM. A worker
  killed at any point leaves at most an aborted upload (storage writes are atomic) and an
  unanswered client, which then does the work itself; the next cold call starts a new one;
- a request configured otherwise than the worker (other settings, config file changed,
  credentials rotated) is not served: the worker cancels its uploads (a cancelled upload
  stores nothing), tells the client to work alone (:data:`STEP_ASIDE`) and exits;
- its files live in pg_wal, whose contents are never part of a base backup;
- WALG_WAL_BACKGROUND=false turns it off: every call then works alone (and wal-push
  uploads ready segments ahead in threads of its own call, as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, TextIO, cast

from walg.errors import WalgError
from walg.logs import get_logger
from walg.wal.daemon_client import BACKGROUND_SOCKET
from walg.wal.markers import ArchiveStatus
from walg.wal.prefetch import Spawner, spawn_detached
from walg.wal.worker import BackgroundWorker, Baseline, lock_path, socket_path, worker_pid

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["LOG_NAME", "applies", "spawner", "start_worker", "worker_pid"]

LOG_NAME: Final = "walg_background.log"
_LOG_LIMIT: Final = 1 << 20

_log = get_logger("walg.wal.background")

Work = Callable[[], None]


# --- starting a worker from a cold call -------------------------------------------------------


def start_worker(
    settings: Settings,
    wal_dir: str,
    environ: Mapping[str, str],
    config_arg: str | None,
    *,
    archived: Iterable[str] = (),
    first: Work | None = None,
    first_lock: int | None = None,
) -> bool:
    """Start the worker of ``wal_dir`` unless one runs, it is turned off, or this is not
    a pg_wal directory; whether one was started. ``config_arg`` is the call's --config,
    ``archived`` the segments it archived; ``first`` runs in a thread of the new worker (a
    prefetch, holding a dup of the fd ``first_lock``). Never raises: a worker is an
    optimisation."""
    if not applies(settings, wal_dir, environ) or threading.active_count() > 1:
        return False  # (forking a process that runs threads is not safe)
    try:
        config_file = os.path.abspath(config_arg) if config_arg else ""
        baseline = Baseline(config_file, environ)
        return _start(settings, wal_dir, baseline, tuple(archived), first, first_lock)
    except Exception as err:
        _log.debug("background worker not started", error=str(err))
        return False


def applies(settings: Settings, wal_dir: str, environ: Mapping[str, str] | None) -> bool:
    """Whether a call in ``wal_dir`` works with a background worker: it is on, no
    ``wal-g daemon`` is configured, ``wal_dir`` is a pg_wal, and this is a wal-g process of
    its own (``environ`` is None when main() runs in-process, e.g. in tests)."""
    return (
        environ is not None
        and settings.wal.background
        and not environ.get("WALG_DAEMON_SOCKET")
        and ArchiveStatus(wal_dir).is_pg_wal
    )


def spawner(
    settings: Settings, wal_dir: str, environ: Mapping[str, str], config_arg: str | None
) -> Spawner:
    """A prefetch :data:`~walg.wal.prefetch.Spawner` that runs the prefetch in a new
    worker, or detached as without workers when one cannot be started."""

    def spawn(work: Work, lock_fd: int) -> None:
        if not start_worker(settings, wal_dir, environ, config_arg, first=work, first_lock=lock_fd):
            spawn_detached(work, lock_fd)

    return spawn


def _start(
    settings: Settings,
    wal_dir: str,
    baseline: Baseline,
    archived: tuple[str, ...],
    first: Work | None,
    first_lock: int | None,
) -> bool:
    from walg.fsutil import make_dirs

    spool = os.path.dirname(socket_path(wal_dir))
    make_dirs(spool, 0o700)
    lock = os.open(lock_path(wal_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a worker runs (or is stopping: the next call starts one)
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)
            return True
        _child(settings, os.path.abspath(wal_dir), baseline, archived, lock, first, first_lock)
    finally:
        os.close(lock)
    return True  # not reached in the child


def _child(
    settings: Settings,
    wal_dir: str,
    baseline: Baseline,
    archived: tuple[str, ...],
    lock: int,
    first: Work | None,
    first_lock: int | None,
) -> None:
    """The intermediate child: a new session, then the worker in a grandchild (re-parented
    to init, so the cold call leaves no zombie)."""
    code = 1
    try:
        os.setsid()
        if os.fork():
            code = 0
        else:
            code = _worker_main(settings, wal_dir, baseline, archived, lock, first, first_lock)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _worker_main(
    settings: Settings,
    wal_dir: str,
    baseline: Baseline,
    archived: tuple[str, ...],
    lock: int,
    first: Work | None,
    first_lock: int | None,
) -> int:
    spool = os.path.dirname(socket_path(wal_dir))
    _redirect_output(os.path.join(spool, LOG_NAME))
    from walg import logs

    logs.configure(settings.log.level, stream=cast(TextIO, _Unfailing(sys.stderr)))
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


def _run_first(first: Work, first_lock: int | None) -> None:
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
