"""Write restored files fast, then make them durable.

With plenty of RAM the kernel would keep a whole restore dirty in memory and write it all
during the final fsyncs, leaving the disk idle while files are decompressed and the CPU
idle while they are flushed. So every 32 MiB, and at the end of each file, writeback is
started (POSIX_FADV_DONTNEED starts writeback of dirty pages and drops only clean ones);
the fsyncs that follow find little left to do. Measured on a 1.1 GB restore here: 4.5 s
with one fsync per file, ~2.5 s with early writeback; O_DIRECT writes were slower (~3 s),
as each write then waits for the disk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from walg.checksum import Crc32c
from walg.fsutil import naming
from walg.sizes import CHUNK

__all__ = ["FileWriter"]

_WRITEBACK = 32 << 20


def _start_writeback(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class FileWriter:
    """Writes files from readable sources through one reused buffer. Not thread-safe:
    use one per thread."""

    def __init__(self) -> None:
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)

    def write(self, path: str, source: Any, mode: int, progress: Callable[[int], None]) -> str:
        """Create ``path`` (never following a symlink) with ``source``'s bytes; return the
        CRC-32C of exactly what was written."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(path, flags, mode)
        try:
            crc = Crc32c()
            unflushed = 0
            while n := self._fill(source):
                crc.update(self._view[:n])
                with naming(path):  # ENOSPC, EIO: say which file
                    _write_all(fd, self._view[:n])
                progress(n)
                unflushed += n
                if unflushed >= _WRITEBACK:
                    _start_writeback(fd)
                    unflushed = 0
                if n < CHUNK:
                    break
            _start_writeback(fd)
            return crc.hexdigest()
        finally:
            os.close(fd)

    def _fill(self, source: Any) -> int:
        """Read into the buffer until it is full or the source ends."""
        got = 0
        while got < CHUNK:
            n = source.readinto(self._view[got:])
            if not n:
                break
            got += n
        return got

    def close(self) -> None:
        self._view.release()


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]
