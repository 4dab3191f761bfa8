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

import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from walg.wal.daemon_client import BACKGROUND_SOCKET
from walg.wal.markers import ArchiveStatus

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.wal.prefetch import Spawner

__all__ = ["applies", "lock_path", "socket_path", "spawner", "start_worker", "worker_pid"]

Work = Callable[[], None]


def socket_path(wal_dir: str) -> str:
    """The worker's socket for the WAL directory ``wal_dir``."""
    return os.path.join(wal_dir, BACKGROUND_SOCKET)


def lock_path(wal_dir: str) -> str:
    """The worker's lock (an flock held while it lives; its PID inside)."""
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
    config_file = os.path.abspath(config_arg) if config_arg else ""
    try:
        return _start(settings, wal_dir, (config_file, dict(environ)), tuple(archived), first,
                      first_lock)  # fmt: skip
    except Exception as err:
        from walg.logs import get_logger

        get_logger("walg.wal.background").debug("worker not started", error=str(err))
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
            from walg.wal.prefetch import spawn_detached

            spawn_detached(work, lock_fd)

    return spawn


def _start(
    settings: Settings,
    wal_dir: str,
    baseline: tuple[str, dict[str, str]],
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
        os.ftruncate(lock, 0)  # a fresh mtime: the next call waits for it to listen
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
    baseline: tuple[str, dict[str, str]],
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
        else:  # the worker: what it needs beyond a cold call is imported here, not there
            from walg.wal.worker import Baseline, run_worker

            code = run_worker(settings, wal_dir, Baseline(*baseline), archived, lock, first,
                              first_lock)  # fmt: skip
    except BaseException:
        code = 1
    finally:
        os._exit(code)


