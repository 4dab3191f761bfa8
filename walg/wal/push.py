"""``wal-push``: archive one WAL file, and upload ready segments ahead in the background.

One call (``archive_command = 'wal-g wal-push %p'``, ``%p`` relative to PGDATA):

1. A segment an earlier call uploaded ahead (see :mod:`walg.wal.markers`) returns at once:
   its marker is checked and removed; no storage SDK or codec library is loaded. The object
   is not stat'ed: a marker is written only after the put returned and names the storage
   it went to, so a stat would only repeat what the marker proves, at the price this path
   exists to avoid (an SDK import and a round trip).
2. Otherwise, up to ``WALG_UPLOAD_CONCURRENCY - 1`` segments PostgreSQL already marked
   ready (plain segment names on the same timeline, after this one, not marked yet) start
   uploading in background threads, each marked once stored. Their failures are logged,
   never raised: each segment is pushed again by its own archive_command call.
3. The file itself (and each background upload) is first checked against its name
   (:func:`walg.postgres.wal_format.check_wal_file`: a segment's size and first page
   header, a history file's lines, a backup history file's start): a file that fails is
   never stored (WalFileInvalid; in the background, a warning). Then with
   WALG_PREVENT_WAL_OVERWRITE (always for ``.history``) an archived
   copy under any known extension (a stat per extension, the configured one first) is
   decrypted, decompressed and compared with the local file as both stream by: identical
   succeeds without an upload, different fails. Else the file is read, compressed and
   encrypted as the storage reads it into ``wal_005/<name>.<ext>``; the call succeeds
   only after the storage's put returned.
4. It waits for the background uploads (AHEAD_GRACE at most, then cancels them: each stops
   at its next chunk and its put is aborted; storage writes are atomic) and returns.

Why threads and not :mod:`walg.pipeline`'s worker processes: starting processes (and
importing ``multiprocess``, ~60 ms) costs more than pushing a 16 MiB segment, while lz4,
brotli and lzma release the GIL as they compress, gpg is a child process, and storage I/O
waits outside the GIL too; a handful of threads keeps both cores busy. Nothing here imports
structlog unless a line is logged (success logs only at DEBUG), nor gnupg without a key.
"""

from __future__ import annotations

import contextlib
import enum
import io
import os
import stat
import threading
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from walg.config.widths import ahead_uploads, compress_threads
from walg.errors import Cancelled, IntegrityError, StorageError, WalFileInvalid, WalgError
from walg.format import layout
from walg.logs import get_logger
from walg.sizes import CHUNK
from walg.wal import names
from walg.wal.markers import READY_SUFFIX, ArchiveStatus
from walg.wal.source import Source, limiter

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.crypto import Crypter
    from walg.storage import Storage

__all__ = ["ABANDON_WAIT", "AHEAD_GRACE", "AheadUploader", "Outcome", "PushResult", "push_wal"]

AHEAD_GRACE: Final = 60.0
"""Seconds background uploads may go on after the file itself was pushed."""
ABANDON_WAIT: Final = 10.0
"""Seconds to wait for cancelled background uploads to stop before exiting without them."""

_log = get_logger("walg.wal")
_RETRY_HINT = "PostgreSQL keeps the WAL file and runs archive_command again"


class Outcome(enum.Enum):
    """How a push ended (every outcome means the file is in the archive)."""

    STORED = "stored"
    IDENTICAL = "identical copy already archived"
    UPLOADED_AHEAD = "uploaded ahead by an earlier call"


@dataclass(frozen=True)
class PushResult:
    """What ``push_wal`` did: the file's outcome and key, and its background uploads."""

    name: str
    outcome: Outcome
    key: str | None = None
    ahead: tuple[str, ...] = ()  # segments stored and marked in the background
    ahead_failed: tuple[str, ...] = ()  # segments whose background upload failed


def _debug(settings: Settings, event: str, **fields: object) -> None:
    """Log at DEBUG without loading structlog when DEBUG is off (this runs per segment)."""
    if settings.log.levelno <= 10:
        _log.debug(event, **fields)


def _equal(local: BinaryIO, archived: BinaryIO) -> bool:
    """Whether two streams hold the same bytes; reads ``archived`` to its end when they do
    (so that its integrity checks run), and holds one chunk of each at a time."""
    while True:
        mine = local.read(CHUNK)
        theirs = archived.read(len(mine) if mine else 1)
        if mine != theirs:
            return False
        if not mine:
            return True


class _Pusher:
    """Stores WAL files in one storage: overwrite checks, compression, encryption."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        crypter: Crypter | None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.crypter = crypter
        self.method = settings.compression.method
        self.limits = (limiter(settings.rate_limits.disk), limiter(settings.rate_limits.network))
        self.cancel = threading.Event() if cancel is None else cancel
        self.threads = compress_threads(settings.concurrency, os.cpu_count() or 1)

    def push(
        self,
        path: str,
        name: str,
        wanted: Callable[[], bool] | None = None,
        threads: int | None = None,
    ) -> tuple[Outcome, str]:
        """Store the file at ``path`` as WAL file ``name``; its outcome and key. With
        ``wanted``, the upload is cancelled (nothing stored) unless it still returns True
        once the whole file was read. ``threads`` compress it (lz4; default: what
        WALG_UPLOAD_CONCURRENCY and the cores allow)."""
        key = names.wal_key(name, self.method)
        if self.settings.wal.check_content:  # WALG_WAL_CHECK_CONTENT=false: WAL-G's way
            _check_content(path, name)
        if self.settings.wal.prevent_overwrite or names.always_compare(name):
            found = self._find_archived(name)
            if found is not None:
                if self._same(found[0], found[1], path):
                    return Outcome.IDENTICAL, found[0]
                raise WalgError(
                    f"{found[0]} is already archived with other content than {path}; "
                    "not overwriting it",
                    hint="another cluster may archive to the same storage: give each its own "
                    f"WALG_*_PREFIX ({_RETRY_HINT})",
                )
        width = self.threads if threads is None else threads
        with Source(
            path, self.method, self.crypter, self.limits, self.cancel, threads=width
        ) as source:
            stream = source if wanted is None else _Checked(source, wanted, path)
            self.storage.put_object(key, cast(BinaryIO, stream))
        return Outcome.STORED, key

    def _find_archived(self, name: str) -> tuple[str, str] | None:
        """``(key, method)`` of an archived copy of ``name``, if there is one. A copy only
        WAL-G can read (zstd, gzip, lzo) cannot be compared, so it is refused rather than
        archived beside (a second, perhaps different history file for one timeline)."""
        for key, method, readable in layout.wal_keys(name, self.method):
            if self.storage.exists(key):
                if not readable:
                    raise WalgError(
                        f"{key} is already archived, compressed with {method}, which walg "
                        "cannot read to compare it with "
                        f"{name}; not archiving a second copy beside it",
                        hint="that copy was written by WAL-G: check it with WAL-G's "
                        "wal-fetch, and delete it if it is wrong, or archive this file with "
                        f"WAL-G ({_RETRY_HINT})",
                    )
                return key, method
        return None

    def _same(self, key: str, method: str, path: str) -> bool:
        """Whether archived object ``key`` (written with ``method``) holds the file's bytes."""
        from walg.wal.decode import open_plain

        crypter = self.crypter
        opened = None if crypter is None else (lambda: crypter)
        try:  # outside the stack: open_plain sees read errors first (brotli without a key)
            with contextlib.ExitStack() as stack:
                local = stack.enter_context(open(path, "rb"))
                stored = stack.enter_context(self.storage.read_object(key))
                sealed = crypter is not None and crypter.sealed
                archived = stack.enter_context(
                    open_plain(stored, key, method, opened, sealed=sealed)
                )
                return _equal(cast(BinaryIO, local), archived)
        except IntegrityError as err:
            raise WalgError(
                f"{key} is already archived but cannot be read to compare it with "
                f"{path}: {err.msg}",
                hint=f"check or remove the damaged object ({_RETRY_HINT})",
            ) from err


class _Checked(io.RawIOBase):
    """A :class:`Source` whose end is an error (Cancelled) unless ``wanted()`` is still
    True when it is reached: then every byte was read while it was."""

    def __init__(self, source: Source, wanted: Callable[[], bool], path: str) -> None:
        super().__init__()
        self._source, self._wanted, self._path = source, wanted, path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._source.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._source.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        n = self._source.readinto(buffer)
        if n == 0 and not self._wanted():
            raise Cancelled(f"{self._path} was archived meanwhile; its upload is cancelled")
        return n


class _Ahead:
    """Background uploads of ready segments, each marked done once stored."""

    def __init__(self, pusher: _Pusher, status: ArchiveStatus, identity: str) -> None:
        self.pusher = pusher
        self.status = status
        self.identity = identity
        self.done: list[str] = []
        self.failed: list[str] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, segments: list[str]) -> None:
        for name in segments:
            thread = threading.Thread(
                target=self._upload, args=(name,), name=f"wal-push {name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _upload(self, name: str) -> None:
        path = os.path.join(self.status.wal_dir, name)
        try:
            _, key = self.pusher.push(path, name)
            self.status.mark(name, self.identity, key)
        except Exception as err:
            with self._lock:
                self.failed.append(name)
            if not isinstance(err, Cancelled):
                message = err.msg if isinstance(err, WalgError) else f"{type(err).__name__}: {err}"
                _log.warning("wal-push: background upload failed", segment=name, error=message)
            return
        with self._lock:
            self.done.append(name)

    def finish(self, cancel: bool) -> None:
        """Wait for the uploads (cancelling them at once, or after AHEAD_GRACE); give up on
        any still running ABANDON_WAIT after the cancel (they are daemon threads)."""
        if cancel:
            self.pusher.cancel.set()
        if self._join(ABANDON_WAIT if cancel else AHEAD_GRACE):
            return
        self.pusher.cancel.set()
        if not self._join(ABANDON_WAIT):
            running = sorted(t.name for t in self._threads if t.is_alive())
            _log.warning("wal-push: background uploads abandoned", uploads=running)

    def _join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


def _check_content(path: str, name: str) -> None:
    """WalFileInvalid unless the file at ``path`` can be WAL file ``name`` (its size and
    first page header, or its text: :mod:`walg.postgres.wal_format`)."""
    from walg.postgres.wal_format import check_wal_file, head_size

    wanted = head_size(name)
    if not wanted:
        return
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(wanted)
    except OSError as err:
        raise WalgError(f"cannot read WAL file {path}: {err.strerror}", hint=_RETRY_HINT) from err
    try:
        check_wal_file(name, size, head)
    except ValueError as err:
        raise WalFileInvalid(
            f"{path} is not a valid WAL file {name}: {err}; nothing was archived",
            hint="a damaged or misnamed WAL file must not reach the archive: check the disk "
            f"and whatever wrote the file ({_RETRY_HINT})",
        ) from None


def _check_local(path: str) -> None:
    """WalgError unless ``path`` is a readable regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WalgError(
            f"WAL file {path} does not exist",
            hint="use archive_command = 'wal-g wal-push %p' (%p is relative to the data directory)",
        ) from None
    except OSError as err:
        raise WalgError(f"cannot read WAL file {path}: {err.strerror}", hint=_RETRY_HINT) from err
    if not stat.S_ISREG(mode):
        raise WalgError(f"{path} is not a regular file", hint="wal-push archives one WAL file")


def _push(
    pusher: _Pusher, status: ArchiveStatus, identity: str, path: str, name: str, upload: bool
) -> PushResult:
    """Push ``path`` while ready segments upload in the background (if ``upload``)."""
    in_pg_wal = status.is_pg_wal and names.is_segment_name(name)
    limit = ahead_uploads(pusher.settings.concurrency) if upload else 0
    ready = status.ready() if in_pg_wal else []
    ahead = _Ahead(pusher, status, identity)
    if ready and limit > 0:
        ahead.start(names.ahead_candidates(name, ready, status.marked(), limit))
    try:
        outcome, key = pusher.push(path, name)
    except BaseException:
        ahead.finish(cancel=True)
        raise
    status.unmark(name)  # a marker naming another storage: stale now
    ahead.finish(cancel=False)
    if in_pg_wal:
        status.sweep(ready)
    return PushResult(name, outcome, key, tuple(sorted(ahead.done)), tuple(sorted(ahead.failed)))


def push_wal(
    settings: Settings,
    path: str,
    storage: Storage | None = None,
    *,
    ahead: bool = True,
    crypter: Crypter | None = None,
    cancel: threading.Event | None = None,
) -> PushResult:
    """Archive the WAL file at ``path`` (see the module docstring).

    ``storage`` defaults to the configured one (tests pass their own). Raises WalgError
    (missing file, different archived content, storage failure); returns only once the
    file is in the archive. ``ahead=False``: no segments are uploaded ahead in this call
    (the background worker does that itself); a warm caller passes its open ``crypter``.
    Setting ``cancel`` (the daemon's time limit) stops the uploads at their next chunk and
    aborts their puts (Cancelled; nothing partial is stored); push_wal sets it too when it
    cancels its background uploads.
    """
    _check_local(path)
    name = os.path.basename(path)
    identity = settings.storage_identity()
    status = ArchiveStatus(os.path.dirname(path))
    if names.is_segment_name(name) and status.take(name, identity):
        _debug(settings, "wal-push: uploaded ahead", file=name)
        return PushResult(name, Outcome.UPLOADED_AHEAD)
    if names.wal_file_kind(name) is None:
        _log.warning("wal-push: not a WAL file name; pushing it anyway", file=path)
    if storage is None:
        from walg.storage import open_storage

        storage = open_storage(settings)
    own = crypter is None
    if own:
        crypter = _open_crypter(settings)
    try:
        pusher = _Pusher(settings, storage, crypter, cancel)
        result = _push(pusher, status, identity, path, name, ahead)
    except StorageError as err:
        raise type(err)(f"cannot archive {name}: {err.msg}", err.hint or _RETRY_HINT) from err
    finally:
        if own and crypter is not None:
            crypter.close()
    _debug(settings, "wal-push: done", file=name, outcome=result.outcome.value, key=result.key,
           ahead=list(result.ahead), ahead_failed=list(result.ahead_failed))  # fmt: skip
    return result


class AheadUploader:
    """Uploads segments PostgreSQL marked ready, ahead of their archive_command calls, each
    marked once stored (:mod:`walg.wal.markers`): the background worker's archiver. Safe
    to use from several threads; ``cancel`` stops every upload at its next chunk."""

    def __init__(self, settings: Settings, storage: Storage, wal_dir: str) -> None:
        self.status = ArchiveStatus(wal_dir)
        self.identity = settings.storage_identity()
        self.crypter = _open_crypter(settings)
        self._pusher = _Pusher(settings, storage, self.crypter)
        self.cancel = self._pusher.cancel

    def candidates(
        self, busy: Container[str], limit: int, ready: Iterable[str] | None = None
    ) -> list[str]:
        """Up to ``limit`` ready plain segments (of ``ready``, a listing of
        ``status.ready()`` if the caller made one), oldest first, neither marked nor
        ``busy``."""
        if limit <= 0:
            return []
        listed = self.status.ready() if ready is None else ready
        segments = [n for n in listed if names.is_segment_name(n) and n not in busy]
        if not segments:
            return []
        marked = self.status.marked()
        return sorted(n for n in segments if n not in marked)[:limit]

    def upload(self, name: str, in_flight: int = 1) -> str:
        """Store segment ``name`` and mark it; its key. Raises what the push raises.
        ``in_flight`` uploads at once share the compression threads.

        The upload is cancelled if the segment's ``.ready`` file is gone when the whole
        file has been read: PostgreSQL archived it another way and may have begun to
        reuse the file for new WAL, so what was read might not be that segment."""
        path = os.path.join(self.status.wal_dir, name)
        ready = os.path.join(self.status.ready_dir, name + READY_SUFFIX)
        threads = max(1, self._pusher.threads // max(1, in_flight))
        _, key = self._pusher.push(path, name, lambda: os.path.exists(ready), threads)
        self.status.mark(name, self.identity, key)
        return key

    def close(self) -> None:
        if self.crypter is not None:
            self.crypter.close()


def _open_crypter(settings: Settings) -> Crypter | None:
    if not settings.crypto.enabled:
        return None
    from walg.crypto import Crypter

    return Crypter(settings.crypto).open()
