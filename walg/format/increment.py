"""WAL-G's increment file format for delta backups, and the page selection behind it.

An increment of a relation file is::

    'w' 'i' '1' 0x55            magic ("wal-g increment", version 1, signature)
    uint64 LE                   size of the whole file when it was backed up
    uint32 LE                   N, the number of blocks that follow
    N x uint32 LE               their block numbers
    N x 8192 bytes              the pages, in the same order

Pure functions: choosing the pages to send (:func:`select_blocks`), writing and reading the
format, and applying an increment to a file restored from the base backup.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from walg.errors import IntegrityError
from walg.postgres.pages import BLOCK_SIZE, page_headers, valid_layout

__all__ = [
    "MAGIC",
    "IncrementHeader",
    "apply_increment",
    "encode_increment",
    "increment_header",
    "read_header",
    "read_pages",
    "select_blocks",
    "select_pages",
]

MAGIC = b"wi1\x55"
_SIZES = struct.Struct("<QI")


class Reader(Protocol):
    """Anything with ``read(count)`` returning bytes (a file, a tar member's body)."""

    def read(self, count: int, /) -> bytes: ...


@dataclass(frozen=True)
class IncrementHeader:
    """What an increment says about its file: the full size and which blocks it carries."""

    file_size: int
    blocks: tuple[int, ...]

    @property
    def length(self) -> int:
        """Bytes of the whole increment, header and pages."""
        return len(MAGIC) + _SIZES.size + 4 * len(self.blocks) + BLOCK_SIZE * len(self.blocks)


def select_blocks(data: bytes | memoryview, since_lsn: int) -> list[int] | None:
    """Block numbers of the pages of ``data`` (a whole relation file) that a delta based on a
    backup started at ``since_lsn`` must carry; None if the file must be sent whole (a page
    with an invalid header, or a size that is not a whole number of pages)."""
    if len(data) % BLOCK_SIZE:
        return None
    return select_pages(data, since_lsn)


def select_pages(
    data: bytes | bytearray | memoryview, since_lsn: int, first: int = 0
) -> list[int] | None:
    """:func:`select_blocks` for a run of whole pages starting at block ``first``, fast:
    the same decisions, made from headers unpacked in bulk. None if a page is invalid."""
    chosen = []
    for blkno, (lsn, _sum, flags, lower, upper, special, version, _xid) in enumerate(
        page_headers(data), start=first
    ):
        if lsn != 0 and valid_layout(flags, lower, upper, special, version):
            if lsn >= since_lsn:
                chosen.append(blkno)
        elif upper == 0:
            chosen.append(blkno)
        else:
            return None
    return chosen


def increment_header(file_size: int, blocks: Sequence[int]) -> bytes:
    """The bytes before the pages of an increment: magic, sizes and block numbers."""
    return MAGIC + _SIZES.pack(file_size, len(blocks)) + struct.pack(f"<{len(blocks)}I", *blocks)


def encode_increment(
    file_size: int, pages: Sequence[tuple[int, bytes | memoryview]]
) -> Iterator[bytes | memoryview]:
    """The increment of a ``file_size``-byte file carrying ``pages`` (block number, page)."""
    for blkno, page in pages:
        if len(page) != BLOCK_SIZE or (blkno + 1) * BLOCK_SIZE > file_size:
            raise ValueError(f"block {blkno} is not a whole page inside the file")
    yield increment_header(file_size, [blkno for blkno, _ in pages])
    for _, page in pages:
        yield page


def read_header(stream: Reader, name: str = "increment") -> IncrementHeader:
    """Parse an increment's header from ``stream``; IntegrityError if it is not one."""
    head = _read_exact(stream, len(MAGIC) + _SIZES.size, name)
    if head[: len(MAGIC)] != MAGIC:
        raise IntegrityError(
            f"{name} is not a WAL-G increment (bad magic bytes)",
            hint="the backup's files metadata and its contents disagree; the backup is damaged",
        )
    file_size, count = _SIZES.unpack_from(head, len(MAGIC))
    blocks = struct.unpack(f"<{count}I", _read_exact(stream, 4 * count, name))
    if any((b + 1) * BLOCK_SIZE > file_size for b in blocks):
        raise IntegrityError(f"{name} carries a block beyond its file size {file_size}")
    return IncrementHeader(file_size, tuple(blocks))


def read_pages(
    stream: Reader, header: IncrementHeader, name: str = "increment"
) -> Iterator[tuple[int, bytes]]:
    """The (block number, page) pairs that follow ``header`` in ``stream``."""
    for blkno in header.blocks:
        yield blkno, _read_exact(stream, BLOCK_SIZE, name)


def apply_increment(path: str, header: IncrementHeader, pages: Iterable[tuple[int, bytes]]) -> None:
    """Bring the file at ``path`` (restored from an older backup) to the increment's state:
    cut or extend it to the recorded size, then write each page at its block."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError as err:
        raise IntegrityError(
            f"{path}: an increment arrived but its base file is missing",
            hint="the delta chain is incomplete; restore from another backup",
        ) from err
    try:
        os.ftruncate(fd, header.file_size)
        for blkno, page in pages:
            view, offset = memoryview(page), blkno * BLOCK_SIZE
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
    finally:
        os.close(fd)


def _read_exact(stream: Reader, count: int, name: str) -> bytes:
    data = stream.read(count)
    while len(data) < count:
        more = stream.read(count - len(data))
        if not more:
            raise IntegrityError(f"{name} is cut short (expected {count} more bytes)")
        data += more
    return bytes(data)
