"""The bytes wal-push uploads: a WAL file read in chunks, compressed, encrypted and held
to the rate limits, as a readable stream that storage ``put_object`` consumes.

lz4 compresses its 4 MiB blocks in ``threads`` threads at once (the same bytes as one
thread: :mod:`walg.compression.lz4_blocks`), so one 16 MiB segment uses both cores.

Stopping is checked between chunks: a cancelled background upload or a SIGTERM ends the
stream with an exception, and the storage then removes or aborts its partial object.
"""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from walg import interrupts
from walg.errors import Cancelled, WalgError
from walg.sizes import CHUNK

if TYPE_CHECKING:
    from walg.compression import Compressor
    from walg.crypto import Crypter, StreamTransform
    from walg.ratelimit import RateLimiter

__all__ = ["Source", "default_threads", "limiter"]


def default_threads() -> int:
    """Compression threads of one upload when the caller names none: what the default
    WALG_UPLOAD_CONCURRENCY allows on this machine (:func:`walg.config.widths.compress_threads`)."""
    from walg.config.settings import ConcurrencySettings
    from walg.config.widths import compress_threads

    return compress_threads(ConcurrencySettings(), os.cpu_count() or 1)


class _ThreadContext:
    """What :class:`walg.ratelimit.RateLimiter` needs from a multiprocessing context,
    for the threads of one process (no process is started, nothing is shared)."""

    @staticmethod
    def RawArray(typecode: str, values: list[float]) -> list[float]:
        return list(values)

    @staticmethod
    def Lock() -> threading.Lock:  # the multiprocessing API
        return threading.Lock()


def limiter(rate: int | None) -> RateLimiter | None:
    if not rate:
        return None
    from walg.ratelimit import RateLimiter

    return RateLimiter(_ThreadContext(), rate)


class Source(io.RawIOBase):
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
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self._path, self._method, self._crypter = path, method, crypter
        self._threads = default_threads() if threads is None else threads
        self._disk, self._network = limits
        self._cancel = cancel
        self._buffer = bytearray(CHUNK)
        self._file: io.FileIO | None = None
        self._compressor: Compressor | None = None
        self._encryptor: StreamTransform | None = None
        self._pending: deque[memoryview] = deque()
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
        self._compressor = new_compressor(self._method, threads=self._threads)
        self._encryptor = None if self._crypter is None else self._crypter.encryptor()

    def _stop(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._encryptor is not None:
            self._encryptor.abort()
        self._file = self._compressor = self._encryptor = None
        self._pending, self._eof, self._position = deque(), False, 0

    def readinto(self, buffer: Any) -> int:
        if self._file is None and not self._eof:
            self._begin()
        while not self._pending and not self._eof:
            self._pending.extend(memoryview(part) for part in self._step())
        if not self._pending:
            return 0
        piece = self._pending[0]
        n = min(len(buffer), len(piece))
        buffer[:n] = piece[:n]
        if n < len(piece):
            self._pending[0] = piece[n:]
        else:
            self._pending.popleft()
        self._position += n
        return n

    def _step(self) -> list[bytes]:
        assert self._file is not None and self._compressor is not None
        interrupts.check()  # SIGTERM / Ctrl-C: Terminated / Cancelled (the put is aborted)
        if self._cancel.is_set():
            raise Cancelled(f"upload of {self._path} cancelled")
        n = self._file.readinto(self._buffer)
        if n:
            if self._disk is not None:
                self._disk.take(n)
            out = self._compressor.compress_parts(memoryview(self._buffer)[:n])
        else:
            out = self._compressor.flush_parts()
        if self._encryptor is not None:
            encryptor = self._encryptor
            out = [piece for part in out if (piece := encryptor.update(part))]
            if not n:
                out.append(encryptor.finish())
        if not n:
            self._eof = True
            self._file.close()
        size = sum(map(len, out))
        if self._network is not None and size:
            self._network.take(size)
        return out

    def close(self) -> None:
        if not self.closed:
            self._stop()
        super().close()
