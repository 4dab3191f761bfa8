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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from walg import interrupts
from walg.backup import layout
from walg.errors import Cancelled, IntegrityError, StorageError, WalFileInvalid, WalgError
from walg.logs import get_logger
from walg.wal import names
from walg.wal.markers import ArchiveStatus

if TYPE_CHECKING:
    from walg.compression import Compressor
    from walg.config import Settings
    from walg.crypto import Crypter, GpgStream
    from walg.ratelimit import RateLimiter
    from walg.storage import Storage

__all__ = ["ABANDON_WAIT", "AHEAD_GRACE", "CHUNK", "Outcome", "PushResult", "push_wal"]

CHUNK: Final = 1 << 20
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


class _ThreadContext:
    """What :class:`walg.ratelimit.RateLimiter` needs from a multiprocessing context,
    for the threads of one process (no process is started, nothing is shared)."""

    @staticmethod
    def RawArray(typecode: str, values: list[float]) -> list[float]:
        return list(values)

    @staticmethod
    def Lock() -> threading.Lock:  # the multiprocessing API
        return threading.Lock()


def _limiter(rate: int | None) -> RateLimiter | None:
    if not rate:
        return None
    from walg.ratelimit import RateLimiter

    return RateLimiter(_ThreadContext(), rate)


class _Source(io.RawIOBase):
    """The bytes to store for a local file, made as they are read: read, compress, encrypt.

    Seekable to its start only, so that a put retried by the storage starts over. Reading
    raises Cancelled once ``cancel`` is set, and Terminated once SIGTERM arrived (see
    :mod:`walg.interrupts`), which makes the storage abort the put.
    """

    def __init__(
        self,
        path: str,
        method: str,
        crypter: Crypter | None,
        limits: tuple[RateLimiter | None, RateLimiter | None],
        cancel: threading.Event,
    ) -> None:
        super().__init__()
        self._path, self._method, self._crypter = path, method, crypter
        self._disk, self._network = limits
        self._cancel = cancel
        self._buffer = bytearray(CHUNK)
        self._file: io.FileIO | None = None
        self._compressor: Compressor | None = None
        self._encryptor: GpgStream | None = None
        self._pending = memoryview(b"")
        self._eof = False
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if offset != 0 or whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a WAL upload can only be rewound to its start")
        self._stop()
        return 0

    def _begin(self) -> None:
        from walg.compression import new_compressor

        try:
            self._file = io.FileIO(self._path, "r")
        except OSError as err:
            raise WalgError(f"cannot read WAL file {self._path}: {err.strerror}") from err
        self._compressor = new_compressor(self._method)
        self._encryptor = None if self._crypter is None else self._crypter.encryptor()

    def _stop(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._encryptor is not None:
            self._encryptor.abort()
        self._file = self._compressor = self._encryptor = None
        self._pending, self._eof, self._position = memoryview(b""), False, 0

    def readinto(self, buffer: Any) -> int:
        if self._file is None and not self._eof:
            self._begin()
        while not self._pending and not self._eof:
            self._pending = memoryview(self._step())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._position += n
        return n

    def _step(self) -> bytes:
        assert self._file is not None and self._compressor is not None
        interrupts.check()  # SIGTERM / Ctrl-C: Terminated / Cancelled (the put is aborted)
        if self._cancel.is_set():
            raise Cancelled(f"upload of {self._path} cancelled")
        n = self._file.readinto(self._buffer)
        if n:
            if self._disk is not None:
                self._disk.take(n)
            out = self._compressor.compress(memoryview(self._buffer)[:n])
        else:
            out = self._compressor.flush()
        if self._encryptor is not None:
            out = self._encryptor.update(out) if out else b""
            if not n:
                out += self._encryptor.finish()
        if not n:
            self._eof = True
            self._file.close()
        if self._network is not None and out:
            self._network.take(len(out))
        return out

    def close(self) -> None:
        if not self.closed:
            self._stop()
        super().close()


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

    def __init__(self, settings: Settings, storage: Storage, crypter: Crypter | None) -> None:
        self.settings = settings
        self.storage = storage
        self.crypter = crypter
        self.method = settings.compression.method
        self.limits = (_limiter(settings.rate_limits.disk), _limiter(settings.rate_limits.network))
        self.cancel = threading.Event()

    def push(self, path: str, name: str) -> tuple[Outcome, str]:
        """Store the file at ``path`` as WAL file ``name``; its outcome and key."""
        key = names.wal_key(name, self.method)
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
        with _Source(path, self.method, self.crypter, self.limits, self.cancel) as source:
            self.storage.put_object(key, cast(BinaryIO, source))
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
        from walg.compression import open_decompressed
        from walg.crypto import looks_encrypted, missing_key_error

        with contextlib.ExitStack() as stack:
            local = stack.enter_context(open(path, "rb"))
            raw = stack.enter_context(self.storage.read_object(key))
            stored = stack.enter_context(io.BufferedReader(cast(io.RawIOBase, raw), CHUNK))
            plain: BinaryIO = cast(BinaryIO, stored)
            if looks_encrypted(stored.peek(64)[:64]):
                if self.crypter is None:
                    raise missing_key_error(key)
                plain = stack.enter_context(self.crypter.open_decrypted(plain, name=key))
            archived = stack.enter_context(open_decompressed(plain, method, key))
            try:
                return _equal(cast(BinaryIO, local), archived)
            except IntegrityError as err:
                raise WalgError(
                    f"{key} is already archived but cannot be read to compare it with "
                    f"{path}: {err.msg}",
                    hint=f"check or remove the damaged object ({_RETRY_HINT})",
                ) from err


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
    pusher: _Pusher, status: ArchiveStatus, identity: str, path: str, name: str
) -> PushResult:
    """Push ``path`` while ready segments upload in the background."""
    in_pg_wal = status.is_pg_wal and names.is_segment_name(name)
    limit = pusher.settings.concurrency.upload - 1
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


def push_wal(settings: Settings, path: str, storage: Storage | None = None) -> PushResult:
    """Archive the WAL file at ``path`` (see the module docstring).

    ``storage`` defaults to the configured one (tests pass their own). Raises WalgError
    (missing file, different archived content, storage failure); returns only once the
    file is in the archive.
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
    crypter = _open_crypter(settings)
    try:
        result = _push(_Pusher(settings, storage, crypter), status, identity, path, name)
    except StorageError as err:
        raise type(err)(f"cannot archive {name}: {err.msg}", err.hint or _RETRY_HINT) from err
    finally:
        if crypter is not None:
            crypter.close()
    _debug(settings, "wal-push: done", file=name, outcome=result.outcome.value, key=result.key,
           ahead=list(result.ahead), ahead_failed=list(result.ahead_failed))  # fmt: skip
    return result


def _open_crypter(settings: Settings) -> Crypter | None:
    if not settings.crypto.enabled:
        return None
    from walg.crypto import Crypter

    return Crypter(settings.crypto).open()
