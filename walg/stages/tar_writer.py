"""Disk reader + tar composer: turns a planned part into the chunks of its tar stream.

Each file is opened, its size taken with fstat, and exactly that many bytes stored: a
file that shrinks while it is read is padded with zeros, one that grows is cut (PostgreSQL
replays WAL over both), so the size in the tar header always matches what follows it.
Files that vanish before they are opened are skipped. Every stored file gets a CRC-32C.

Members are named as WAL-G names them: the path relative to PGDATA with a leading '/'.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from walg.backup.scan import Entry, Part
from walg.checksum import Crc32c
from walg.pipeline import Stage, WorkerContext
from walg.stages.chunks import Chunk

__all__ = ["CHUNK_SIZE", "TarWriter", "tar_header"]

CHUNK_SIZE = 1 << 20
_BLOCK = 512


def tar_header(entry: Entry, size: int) -> bytes:
    """The (PAX) header of ``entry`` holding ``size`` bytes, named like WAL-G names it."""
    info = tarfile.TarInfo("/" + entry.name)
    info.mtime = int(entry.mtime)
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.size = size
    return info.tobuf(format=tarfile.PAX_FORMAT)


@dataclass
class _Throttle:
    """Optional shared limits on disk reads: a semaphore of concurrent readers and a rate."""

    semaphore: Any = None
    limiter: Any = None


class TarWriter(Stage):
    """Input: :class:`Part` plans. Output: :class:`Chunk` of each part's tar stream; the
    last chunk's meta holds ``files`` (name -> size, mtime, crc32c) and ``tar_size``."""

    def __init__(self, extension: str) -> None:
        self.extension = extension

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.throttle = _Throttle(ctx.shared.get("disk_readers"), ctx.shared.get("disk_rate"))

    def process(self, part: Part) -> Iterator[Chunk]:
        name = part.tar_name + (f".{self.extension}" if self.extension else "")
        out = _ChunkBuilder(part.number, name)
        files: dict[str, dict[str, Any]] = {}
        for entry in part.entries:
            if entry.kind == "file":
                yield from self._add_file(out, entry, files)
            else:
                yield from out.write(tar_header(entry, 0))
        yield from out.write(bytes(2 * _BLOCK))
        yield out.close({"files": files, "tar_size": out.total})

    def _add_file(self, out: _ChunkBuilder, entry: Entry, files: dict[str, Any]) -> Iterator[Chunk]:
        try:
            handle = open(entry.path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return  # vanished since the scan: PostgreSQL dropped it; WAL replay agrees
        with handle:
            size = os.fstat(handle.fileno()).st_size
            yield from out.write(tar_header(entry, size))
            crc = Crc32c()
            left = size
            while left:
                view = out.reserve(left)
                got = self._read(handle, view)
                if got == 0:  # the file shrank: pad with zeros up to the header's size
                    view[:] = bytes(len(view))
                    got = len(view)
                crc.update(view[:got])
                out.commit(got)
                left -= got
                self.ctx.progress(nbytes=got)
                if out.full:
                    yield out.take()
            yield from out.write(bytes(-size % _BLOCK))
        files["/" + entry.name] = {"size": size, "mtime": entry.mtime, "crc32c": crc.hexdigest()}
        self.ctx.progress(items=1)

    def _read(self, handle: Any, view: memoryview) -> int:
        semaphore, limiter = self.throttle.semaphore, self.throttle.limiter
        if limiter is not None:
            limiter.take(len(view))
        if semaphore is None:
            return int(handle.readinto(view))
        with semaphore:
            return int(handle.readinto(view))


class _ChunkBuilder:
    """Fills fresh CHUNK_SIZE buffers with the tar stream and hands them out when full."""

    def __init__(self, part: int, name: str) -> None:
        self.part = part
        self.name = name
        self.seq = 0
        self.total = 0
        self._buffer = bytearray(CHUNK_SIZE)
        self._used = 0

    @property
    def full(self) -> bool:
        return self._used == CHUNK_SIZE

    def reserve(self, want: int) -> memoryview:
        """A writable view of up to ``want`` free bytes of the current buffer."""
        n = min(want, CHUNK_SIZE - self._used)
        return memoryview(self._buffer)[self._used : self._used + n]

    def commit(self, n: int) -> None:
        self._used += n
        self.total += n

    def write(self, data: bytes) -> Iterator[Chunk]:
        view = memoryview(data)
        while view:
            room = self.reserve(len(view))
            room[:] = view[: len(room)]
            self.commit(len(room))
            view = view[len(room) :]
            if self.full:
                yield self.take()

    def take(self, last: bool = False, meta: dict[str, Any] | None = None) -> Chunk:
        data = self._buffer if self._used == CHUNK_SIZE else self._buffer[: self._used]
        chunk = Chunk(self.part, self.name, self.seq, data, last, meta or {})
        self.seq += 1
        self._buffer = bytearray(CHUNK_SIZE)
        self._used = 0
        return chunk

    def close(self, meta: dict[str, Any]) -> Chunk:
        return self.take(last=True, meta=meta)
