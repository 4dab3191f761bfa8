"""Disk reader + tar composer: turns a planned part into the chunks of its tar stream.

Each file is opened, its size taken with fstat, and exactly that many bytes stored: a
file that shrinks while it is read is padded with zeros, one that grows is cut (PostgreSQL
replays WAL over both), so the size in the tar header always matches what follows it.
Files that vanish before they are opened are skipped. Every stored file gets a CRC-32C.

Members are named as WAL-G names them: the path relative to PGDATA with a leading '/'.

In a delta backup, relation files planned with ``since_lsn`` are read twice: a first pass
picks the pages changed since the base (increment.select_pages), then the tar header (whose
size must come first) and the increment are written, the chosen pages read again at their
offsets. The delta filter is fused into this stage: it needs the open file and the part's
byte stream both, and a separate stage would move every page through one more channel.
"""

from __future__ import annotations

import os
import sys
import tarfile
from collections.abc import Generator, Iterator
from typing import Any

from walg.checksum import Crc32c
from walg.format.increment import increment_header, select_pages
from walg.format.scan import Entry, Part, is_paged_file
from walg.fsutil import naming
from walg.pipeline import Stage, WorkerContext
from walg.postgres.pages import BLOCK_SIZE
from walg.postgres.verify import PageVerifier
from walg.sizes import CHUNK as CHUNK_SIZE
from walg.stages.chunks import Chunk, StoredFile, TarPartReport
from walg.stages.throttle import Throttles

__all__ = ["CHUNK_SIZE", "TarWriter", "tar_header"]

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


class TarWriter(Stage):
    """Input: :class:`Part` plans. Output: :class:`Chunk` of each part's tar stream; the
    last chunk carries the part's :class:`TarPartReport`. Disk reads obey the run's
    :class:`Throttles` (readers at once, disk rate)."""

    def __init__(self, extension: str, verify_since: int | None = None) -> None:
        self.extension = extension
        self.verify_since = verify_since  # check page checksums (pages older than this LSN)

    def open(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._scan_buffer: bytearray | None = None
        self._pool = _BufferPool()
        throttles = Throttles.of(ctx)
        self.semaphore, self.limiter = throttles.disk_readers, throttles.disk_rate

    def process(self, part: Part) -> Iterator[Chunk]:
        name = part.tar_name + (f".{self.extension}" if self.extension else "")
        out = _ChunkBuilder(part.number, name, self._pool)
        files: dict[str, StoredFile] = {}
        for entry in part.entries:
            if entry.kind == "file":
                yield from self._add_file(out, entry, files)
            else:
                yield from out.write(tar_header(entry, 0))
        yield from out.write(bytes(2 * _BLOCK))
        yield out.close(TarPartReport(files, out.total))

    def _add_file(
        self, out: _ChunkBuilder, entry: Entry, files: dict[str, StoredFile]
    ) -> Iterator[Chunk]:
        try:
            handle = open(entry.path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return  # vanished since the scan: PostgreSQL dropped it; WAL replay agrees
        with handle, naming(entry.path):  # EIO while reading: say which file
            size = os.fstat(handle.fileno()).st_size
            verifier = None
            if self.verify_since is not None and is_paged_file(entry.name, size):
                verifier = PageVerifier(entry.name, self.verify_since)
            blocks = None
            if entry.since_lsn is not None and size and size % BLOCK_SIZE == 0:
                blocks = self._select(handle, size, entry.since_lsn, verifier)
            if blocks is None:
                if verifier is not None:
                    verifier.reset()
                stored = yield from self._whole(out, entry, handle, size, verifier)
            else:
                stored = yield from self._increment(out, entry, handle, size, blocks)
        corrupt = tuple(verifier.bad) if verifier is not None else ()
        if corrupt:
            self.ctx.log.warning(
                "page checksum failures",
                file=entry.name,
                pages=len(corrupt),
                first_blocks=list(corrupt[:10]),
            )
        files["/" + entry.name] = StoredFile(
            stored[0], entry.mtime, stored[1], blocks is not None, corrupt
        )
        self.ctx.progress(items=1)

    def _whole(
        self,
        out: _ChunkBuilder,
        entry: Entry,
        handle: Any,
        size: int,
        verifier: PageVerifier | None = None,
    ) -> Generator[Chunk, None, tuple[int, str]]:
        """Store ``size`` bytes of the file from its start; return (size, CRC-32C)."""
        handle.seek(0)
        yield from out.write(tar_header(entry, size))
        crc = Crc32c()
        left = size
        while left:
            view = out.reserve(left)
            got = self._read(handle, view)
            if got == 0:  # the file shrank: pad with zeros up to the header's size
                view[:] = bytes(len(view))
                got = len(view)
            elif verifier is not None:
                verifier.feed(view[:got])
            crc.update(view[:got])
            out.commit(got)
            left -= got
            self.ctx.progress(nbytes=got)
            if out.full:
                yield out.take()
        yield from out.write(bytes(-size % _BLOCK))
        return size, crc.hexdigest()

    def _select(
        self, handle: Any, size: int, since_lsn: int, verifier: PageVerifier | None
    ) -> list[int] | None:
        """First pass over a relation file: the blocks a delta must carry (see
        increment.select_pages), or None to store it whole."""
        if self._scan_buffer is None:
            self._scan_buffer = bytearray(CHUNK_SIZE)
        buffer = memoryview(self._scan_buffer)
        chosen: list[int] = []
        offset = 0
        while offset < size:
            view = buffer[: min(CHUNK_SIZE, size - offset)]
            got = 0
            while got < len(view) and (n := self._read(handle, view[got:])):
                got += n
            if got % BLOCK_SIZE:
                return None  # cut inside a page while being truncated: send it whole
            if verifier is not None:
                verifier.feed(view[:got])
            picked = select_pages(view[:got], since_lsn, offset // BLOCK_SIZE)
            if picked is None:
                return None
            chosen += picked
            self.ctx.progress(nbytes=got)
            if got < len(view):
                break  # the file shrank: WAL replay truncates it too
            offset += got
        return chosen

    def _increment(
        self, out: _ChunkBuilder, entry: Entry, handle: Any, size: int, blocks: list[int]
    ) -> Generator[Chunk, None, tuple[int, str]]:
        """Second pass: store the increment of ``blocks``; return (its size, CRC-32C)."""
        header = increment_header(size, blocks)
        length = len(header) + BLOCK_SIZE * len(blocks)
        yield from out.write(tar_header(entry, length))
        yield from out.write(header)
        crc = Crc32c()
        crc.update(header)
        for first, count in _runs(blocks):
            offset, left = first * BLOCK_SIZE, count * BLOCK_SIZE
            while left:
                view = out.reserve(left)
                got = self._pread(handle, view, offset)
                if got == 0:  # truncated since the first pass: zeros (a new page)
                    view[:] = bytes(len(view))
                    got = len(view)
                crc.update(view[:got])
                out.commit(got)
                left -= got
                offset += got
                if out.full:
                    yield out.take()
        yield from out.write(bytes(-length % _BLOCK))
        return length, crc.hexdigest()

    def _pread(self, handle: Any, view: memoryview, offset: int) -> int:
        semaphore, limiter = self.semaphore, self.limiter
        if limiter is not None:
            limiter.take(len(view))
        if semaphore is None:
            return os.preadv(handle.fileno(), [view], offset)
        with semaphore:
            return os.preadv(handle.fileno(), [view], offset)

    def _read(self, handle: Any, view: memoryview) -> int:
        semaphore, limiter = self.semaphore, self.limiter
        if limiter is not None:
            limiter.take(len(view))
        if semaphore is None:
            return int(handle.readinto(view))
        with semaphore:
            return int(handle.readinto(view))


def _runs(blocks: list[int]) -> Iterator[tuple[int, int]]:
    """(first block, count) of each run of consecutive block numbers in sorted ``blocks``."""
    start = prev = -2
    for blkno in blocks:
        if blkno != prev + 1:
            if prev >= 0:
                yield start, prev - start + 1
            start = blkno
        prev = blkno
    if prev >= 0:
        yield start, prev - start + 1


class _BufferPool:
    """Chunk buffers used again once nothing refers to them any more.

    A fresh 1 MiB bytearray is zero-filled by Python (~50 us, 5% of a part chain's time)
    only to be overwritten by the read. A chunk handed downstream is referred to by its
    :class:`Chunk`, and by any view of it a later stage keeps (a memoryview holds its base
    object); when only this pool refers to a buffer, every stage is done with it, and it is
    handed out again as it is (its bytes are overwritten before anyone reads them)."""

    KEEP = 8  # buffers kept: the chunks a chain or a channel may hold at once, and spare

    def __init__(self) -> None:
        self._buffers: list[bytearray] = []

    def take(self) -> bytearray:
        for buffer in self._buffers:
            # three references: the list, this loop's name, getrefcount's argument
            if sys.getrefcount(buffer) <= 3:
                return buffer
        buffer = bytearray(CHUNK_SIZE)
        if len(self._buffers) < self.KEEP:
            self._buffers.append(buffer)
        return buffer


class _ChunkBuilder:
    """Fills CHUNK_SIZE buffers with the tar stream and hands them out when full."""

    def __init__(self, part: int, name: str, pool: _BufferPool) -> None:
        self.part = part
        self.name = name
        self.seq = 0
        self.total = 0
        self._pool = pool
        self._buffer = pool.take()
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

    def take(self, last: bool = False, report: TarPartReport | None = None) -> Chunk:
        data = self._buffer if self._used == CHUNK_SIZE else self._buffer[: self._used]
        chunk = Chunk(self.part, self.name, self.seq, data, last, report)
        self.seq += 1
        self._buffer = self._pool.take()
        self._used = 0
        return chunk

    def close(self, report: TarPartReport) -> Chunk:
        return self.take(last=True, report=report)
