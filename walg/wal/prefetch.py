"""WAL prefetch for ``wal-g wal-fetch``: the next segments are downloaded in the background.

After serving segment N, wal-fetch starts a detached prefetcher that downloads segments
N+1 .. N+k (k = WALG_DOWNLOAD_CONCURRENCY, same timeline) next to the destination::

    <dirname(DEST)>/.wal-g/prefetch/<segment>           complete, verified segments
    <dirname(DEST)>/.wal-g/prefetch/running/<segment>   downloads in progress
    <dirname(DEST)>/.wal-g/prefetch/.lock               held (flock) by the live prefetcher

A download is written to ``running/``, fsynced, checked (its WAL long page header must name
its own segment and a segment size equal to the file's size) and only then renamed into
``prefetch/``: a file there is complete. A later wal-fetch renames it into DEST (same file
system), after checking the header and size again; a file in ``running/`` is never served.
If the segment it wants is still running, wal-fetch waits for it while the file grows
(rather than downloading it a second time), and gives up after STALL_TIMEOUT without progress.

The prefetcher is a double-forked child in its own session (so PostgreSQL stopping the
startup process's process group does not kill it, and no zombie is left). It inherits the
settings and the already imported modules, so it costs no interpreter start; it inherits
stderr (PostgreSQL's log), where its failures are logged, and never affects the exit code.
At most one prefetcher runs per directory: wal-fetch takes the lock before forking and the
child inherits it; if the lock is held, no new prefetcher starts. Holding the lock, the
prefetcher knows any file in ``running/`` is a crashed predecessor's and removes it.

Every wal-fetch of a segment removes cached files older than the requested segment. Names
other than plain segments (.history, .partial, .backup) are neither cached nor prefetched.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from walg.config.widths import prefetch_count
from walg.fsutil import fsync_dir
from walg.logs import get_logger
from walg.postgres.wal import is_segment_name, next_segment_name
from walg.postgres.wal_format import LONG_HEADER_SIZE, segment_size_of

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.storage import Storage

__all__ = [
    "LONG_HEADER_SIZE",
    "PREFETCH_DIR",
    "STALL_TIMEOUT",
    "PrefetchDirs",
    "Spawner",
    "cleanup",
    "fetch_with_prefetch",
    "next_names",
    "prefetch",
    "prefetcher_running",
    "segment_size_of",
    "spawn_detached",
    "spawn_thread",
    "start_prefetch",
    "take_cached",
]

PREFETCH_DIR: Final = os.path.join(".wal-g", "prefetch")
STALL_TIMEOUT: Final = 10.0
"""Seconds a running prefetch may make no progress before wal-fetch downloads itself."""
_POLL: Final = 0.005

_log = get_logger("walg.wal.prefetch")
T = TypeVar("T")


@dataclass(frozen=True)
class PrefetchDirs:
    """The prefetch cache next to a destination: complete files, running ones, the lock."""

    root: str
    running: str
    lock: str

    @classmethod
    def beside(cls, destination: str) -> PrefetchDirs:
        """The cache in ``.wal-g/prefetch`` of ``destination``'s directory (absolute)."""
        root = os.path.join(os.path.dirname(os.path.abspath(destination)), PREFETCH_DIR)
        return cls(root, os.path.join(root, "running"), os.path.join(root, ".lock"))


# --- pure helpers -----------------------------------------------------------------------------


def next_names(name: str, segment_size: int, count: int) -> list[str]:
    """The ``count`` segment names after ``name`` on its timeline (fewer at the very end)."""
    names: list[str] = []
    for _ in range(count):
        try:
            name = next_segment_name(name, segment_size)
        except ValueError:
            break
        names.append(name)
    return names


# --- the foreground: cleanup, serving from the cache, starting a prefetcher ------------------


def cleanup(dirs: PrefetchDirs, name: str) -> None:
    """Remove cached and running segments older than segment ``name``."""
    for folder in (dirs.root, dirs.running):
        try:
            entries = os.listdir(folder)
        except FileNotFoundError:
            continue
        for entry in entries:
            if is_segment_name(entry) and entry < name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, entry))


@contextlib.contextmanager
def _locked(path: str, operation: int) -> Iterator[int | None]:
    """An fd of ``path`` with ``flock(operation | LOCK_NB)`` taken, or None if it is held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
        else:
            yield fd
    finally:
        os.close(fd)


def prefetcher_running(dirs: PrefetchDirs) -> bool:
    """Whether a live prefetcher holds the lock of ``dirs``."""
    if not os.path.exists(dirs.lock):
        return False
    with _locked(dirs.lock, fcntl.LOCK_SH) as fd:
        return fd is None


def _await_running(dirs: PrefetchDirs, name: str, stall: float) -> None:
    """Wait while a live prefetcher is downloading ``name`` and its file keeps growing."""
    running = os.path.join(dirs.running, name)
    cached = os.path.join(dirs.root, name)
    last, since = -1, time.monotonic()
    while not os.path.exists(cached) and prefetcher_running(dirs):
        try:
            size = os.stat(running).st_size
        except FileNotFoundError:
            return  # finished (the rename is atomic) or failed
        now = time.monotonic()
        if size != last:
            last, since = size, now
        elif now - since > stall:
            _log.warning("wal prefetch stalled; fetching directly", segment=name)
            return
        time.sleep(_POLL)


def take_cached(
    dirs: PrefetchDirs,
    name: str,
    destination: str,
    stall: float = STALL_TIMEOUT,
    checked: bool = True,
) -> int | None:
    """Move the prefetched segment ``name`` to ``destination``; return its segment size,
    or None if it is not cached (a damaged cached file is removed)."""
    if os.path.exists(os.path.join(dirs.running, name)):
        _await_running(dirs, name, stall)
    cached = os.path.join(dirs.root, name)
    try:
        fd = os.open(cached, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        head = os.pread(fd, LONG_HEADER_SIZE, 0)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    declared = segment_size_of(head, name, size, checked)
    if declared != size:
        _log.warning("wal prefetch: damaged cached segment removed", segment=name, size=size)
        os.unlink(cached)
        return None
    os.replace(cached, destination)
    fsync_dir(os.path.dirname(os.path.abspath(destination)))
    return declared


Spawner = Callable[[Callable[[], None], int], None]
"""Runs a prefetch in the background; the ``int`` is the fd holding the cache's lock, which
must stay open until the work is done (a forked child inherits it; a thread dups it)."""


def start_prefetch(
    settings: Settings,
    dirs: PrefetchDirs,
    name: str,
    segment_size: int,
    *,
    storage: Storage | None = None,
    spawn: Spawner | None = None,
) -> bool:
    """Start a prefetcher (by default a detached process) for the segments after ``name``
    unless they are all cached already or another prefetcher runs. Returns whether one
    was started."""
    names = next_names(name, segment_size, prefetch_count(settings.concurrency))
    if all(os.path.exists(os.path.join(dirs.root, n)) for n in names):
        return False
    os.makedirs(dirs.running, exist_ok=True)
    with _locked(dirs.lock, fcntl.LOCK_EX) as fd:
        if fd is None:  # (no log line: even a filtered one would import structlog)
            return False
        (spawn or spawn_detached)(
            lambda: prefetch(settings, dirs, names, segment_size, storage=storage), fd
        )
    return True


def spawn_thread(work: Callable[[], None], lock_fd: int) -> None:
    """A :data:`Spawner` for long-lived processes (``wal-g daemon``): run ``work`` in a
    thread that keeps its own descriptor of the lock until it is done (forking a process
    that runs threads is not safe)."""
    import threading

    held = os.dup(lock_fd)

    def run() -> None:
        try:
            work()
        except Exception as err:
            _log.warning("wal prefetch failed", error=str(err), error_type=type(err).__name__)
        finally:
            os.close(held)

    threading.Thread(target=run, name="walg-prefetch", daemon=True).start()


def spawn_detached(work: Callable[[], None], lock_fd: int) -> None:
    """Run ``work`` in a grandchild in a new session, and return at once.

    The intermediate child exits right after forking, so the caller reaps it immediately and
    the grandchild (re-parented to init) never becomes the caller's zombie. The grandchild
    inherits every open file description, including a held flock, and ends with _exit.
    """
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    code = 1
    try:
        os.setsid()
        if os.fork():
            code = 0
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # wal-fetch's handler is not ours
            _detach_stdio()
            work()
            code = 0
    except BaseException as err:
        with contextlib.suppress(BaseException):
            _log.warning("wal prefetch failed", error=str(err), error_type=type(err).__name__)
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _detach_stdio() -> None:
    """Point stdin and stdout at /dev/null (stderr stays: it is PostgreSQL's log)."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


# --- the prefetcher ---------------------------------------------------------------------------


def prefetch(
    settings: Settings,
    dirs: PrefetchDirs,
    names: list[str],
    segment_size: int,
    *,
    storage: Storage | None = None,
) -> None:
    """Download ``names`` into the cache in parallel threads; log failures, raise nothing
    but setup errors. The caller must hold the lock of ``dirs``."""
    from concurrent.futures import ThreadPoolExecutor

    os.makedirs(dirs.running, exist_ok=True)
    for stale in os.listdir(dirs.running):  # holding the lock, nobody else writes here
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(dirs.running, stale))
    # Local storage is CPU-bound (decompression holds the GIL): more threads than cores
    # would only delay the next segment, which PostgreSQL asks for first.
    local = settings.require_storage().kind == "file"
    width = min(len(names), os.cpu_count() or 1) if local else len(names)
    prefetcher = _Prefetcher(settings, dirs, segment_size, len(names), storage)
    try:
        with ThreadPoolExecutor(max(1, width), thread_name_prefix="walg-prefetch") as pool:
            for index, name in enumerate(names):
                pool.submit(prefetcher.one, index, name)
    finally:
        prefetcher.crypters.close()


# A prefetch that fails (a storage blip, a gpg process that could not reach its agent on a
# loaded host) is tried once more before it is left to wal-fetch itself: the segment is
# needed soon, and a second read is cheaper than PostgreSQL waiting for it.
_PREFETCH_TRIES: Final = 2


class _Prefetcher:
    """What the download threads share: storage, key, and where the archive ended."""

    def __init__(
        self,
        settings: Settings,
        dirs: PrefetchDirs,
        segment_size: int,
        count: int,
        storage: Storage | None = None,
    ):
        from walg.storage import open_storage
        from walg.wal.fetch import SharedCrypter

        self.settings = settings
        self.dirs = dirs
        self.segment_size = segment_size
        self.storage = storage or open_storage(settings)
        self.crypters = SharedCrypter(settings.crypto)
        self.first_missing = count  # segments from this index on are not tried

    def one(self, index: int, name: str) -> None:
        """Prefetch segment ``name`` (the ``index``-th) unless it is cached or past the end."""
        from walg.errors import ObjectNotFound

        target = os.path.join(self.dirs.root, name)
        if index >= self.first_missing or os.path.exists(target):
            return
        running = os.path.join(self.dirs.running, name)
        for attempt in range(1, _PREFETCH_TRIES + 1):
            try:
                self._download(name, running)
                os.rename(running, target)
                fsync_dir(self.dirs.root)
                _log.debug("wal prefetched", segment=name)
                return
            except ObjectNotFound:
                self.first_missing = min(self.first_missing, index)
                _log.debug("wal prefetch reached the end of the archive", segment=name)
                return
            except FileNotFoundError:  # wal-fetch removed it: recovery is already past it
                _log.debug("wal prefetch no longer needed", segment=name)
                return
            except Exception as err:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(running)
                if attempt == _PREFETCH_TRIES:
                    _log.warning("wal prefetch failed", segment=name, error=str(err))

    def _download(self, name: str, running: str) -> None:
        """Download ``name`` to ``running`` and check it is one whole segment."""
        from walg.errors import IntegrityError
        from walg.wal.fetch import download

        head = download(self.storage, self.settings, name, running, self.crypters, exclusive=False)
        size = os.stat(running).st_size
        checked = self.settings.wal.check_content
        if size != self.segment_size or segment_size_of(head, name, size, checked) != size:
            want = self.segment_size
            raise IntegrityError(f"{name} is not a whole {want}-byte WAL segment ({size} bytes)")


# --- wal-fetch with the cache -----------------------------------------------------------------


def fetch_with_prefetch(
    settings: Settings,
    name: str,
    destination: str,
    prefetch: bool = True,
    *,
    storage: Storage | None = None,
    spawn: Spawner | None = None,
) -> None:
    """``wal-g wal-fetch NAME DEST``: serve ``name`` from the prefetch cache or from storage,
    then start prefetching the segments after it. Prefetch problems are only logged.
    With ``prefetch=False`` (``--no-prefetch``) neither the cache nor a prefetcher is used.
    A warm caller (the daemon) passes its open ``storage`` and :func:`spawn_thread`."""
    if not prefetch or not is_segment_name(name):
        _fetch(settings, name, destination, storage)
        return
    dirs = PrefetchDirs.beside(destination)
    _quietly("clean the prefetch cache", lambda: cleanup(dirs, name))
    checked = settings.wal.check_content
    take = functools.partial(take_cached, dirs, name, destination, checked=checked)
    size = _quietly("use the prefetch cache", take)
    if size is None:
        head = _fetch(settings, name, destination, storage)
        size = segment_size_of(head, name, os.stat(destination).st_size, checked)
    if size is not None:
        segment_size = size
        _quietly(
            "start prefetching",
            lambda: start_prefetch(
                settings, dirs, name, segment_size, storage=storage, spawn=spawn
            ),
        )


def _fetch(settings: Settings, name: str, destination: str, storage: Storage | None) -> bytes:
    """Fetch ``name`` from storage to ``destination``; return the file's first bytes."""
    from walg.storage import open_storage
    from walg.wal.fetch import fetch_wal

    return fetch_wal(storage or open_storage(settings), settings, name, destination)


def _quietly(what: str, action: Callable[[], T]) -> T | None:
    """Run ``action``; log an OSError or walg error as a warning and return None."""
    from walg.errors import WalgError

    try:
        return action()
    except (OSError, WalgError) as err:
        _log.warning(f"wal prefetch: cannot {what}", error=str(err))
        return None
