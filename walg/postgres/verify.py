"""Checking PostgreSQL page checksums while a backup reads relation files
(WALG_VERIFY_PAGE_CHECKSUMS / ``backup-push --verify``, clusters with data_checksums on).

A page fails when its stored pd_checksum differs from ``pg_checksum_page`` (with the
page's block number in the relation: segment number * 131072 + index in the segment), or
when it is "new" (pd_upper == 0) but not all zeros. Pages whose header is valid and whose
pd_lsn is at or after the backup's start LSN are not checked: a concurrent write may have
torn them while they were read, and WAL replay rewrites them anyway. Corrupt blocks are
reported (and recorded in the files metadata, as WAL-G's ``CorruptBlocks``), never fatal:
the backup of a damaged cluster is still the best copy there is.
"""

from __future__ import annotations

import struct

from walg.postgres.pages import (
    BLOCK_SIZE,
    RELSEG_SIZE,
    page_checksums,
    page_headers,
    valid_layout,
)

__all__ = ["PageVerifier", "corrupt_blocks", "segment_number"]

_ZERO = bytes(BLOCK_SIZE)


def segment_number(name: str) -> int:
    """The segment of relation file ``name`` (``16384.2`` -> 2, ``16384`` -> 0)."""
    suffix = name.rsplit("/", 1)[-1].partition(".")[2]
    return int(suffix) if suffix.isdigit() else 0


def corrupt_blocks(data: bytes | bytearray | memoryview, first: int, since_lsn: int) -> list[int]:
    """Block numbers (in the relation) of the pages of ``data`` that fail their checksum;
    ``first`` is the block number of its first page (segment * 131072 + page index in
    the segment file)."""
    view = memoryview(data)
    headers = list(page_headers(view))
    check = [
        i
        for i, (lsn, _sum, flags, lower, upper, special, version, _xid) in enumerate(headers)
        if not (valid_layout(flags, lower, upper, special, version) and lsn >= since_lsn)
    ]
    bad = []
    pending = []
    for i in check:
        if headers[i][4] == 0:  # new page (pd_upper 0): must be all zeros
            if view[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE] != _ZERO:
                bad.append(i)
        else:
            pending.append(i)
    if pending:
        bad += _checksum_failures(view, pending, first)
    return sorted(first + i for i in bad)


def _checksum_failures(view: memoryview, pages: list[int], first: int) -> list[int]:
    """The pages (indexes in ``view``) whose stored checksum differs from the computed one."""
    failures = []
    start = 0
    while start < len(pages):  # checksum runs of consecutive pages together
        end = start + 1
        while end < len(pages) and pages[end] == pages[end - 1] + 1:
            end += 1
        lo, hi = pages[start], pages[end - 1] + 1
        sums = page_checksums(view[lo * BLOCK_SIZE : hi * BLOCK_SIZE], first + lo)
        for offset, computed in enumerate(sums):
            stored = struct.unpack_from("<H", view, (lo + offset) * BLOCK_SIZE + 8)[0]
            if stored != computed:
                failures.append(lo + offset)
        start = end
    return failures


class PageVerifier:
    """Checks the pages of one relation file as its bytes stream past, in any pieces;
    ``bad`` lists the failing pages by their index in the file."""

    def __init__(self, name: str, since_lsn: int) -> None:
        self.since_lsn = since_lsn
        self.base_block = segment_number(name) * RELSEG_SIZE
        self.bad: list[int] = []
        self.reset()

    def reset(self) -> None:
        """Start over from the file's first byte (it is being read again)."""
        self.bad = []
        self._carry = bytearray()
        self._pages = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._carry:
            self._carry += data
            data = self._carry
        whole = len(data) - len(data) % BLOCK_SIZE
        if whole:
            first = self.base_block + self._pages
            found = corrupt_blocks(memoryview(data)[:whole], first, self.since_lsn)
            self.bad += [b - self.base_block for b in found]
            self._pages += whole // BLOCK_SIZE
        self._carry = bytearray(memoryview(data)[whole:])
