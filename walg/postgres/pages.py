"""Relation pages: header fields, WAL-G's validity rule, and PostgreSQL's page checksum (pure).

Layout (``src/include/storage/bufpage.h``), little-endian::

    0  pd_lsn              uint32 xlogid (high half), uint32 xrecoff (low half)
    8  pd_checksum         uint16
    10 pd_flags            uint16
    12 pd_lower            uint16
    14 pd_upper            uint16
    16 pd_special          uint16
    18 pd_pagesize_version uint16   (page size | layout version 4)
    20 pd_prune_xid        uint32

The checksum is ``pg_checksum_page`` of ``src/include/storage/checksum_impl.h``: the page
(with pd_checksum zeroed) as 64 rows of 32 uint32 columns, each column hashed with
``h = (h ^ v) * 16777619 ^ ((h ^ v) >> 17)`` from its own base offset, two more rounds with 0,
the 32 column hashes XORed, XORed with the block number, reduced with ``% 65535 + 1``.

The 32 columns (of many pages at once) are computed in parallel as the 64-bit slots of one
Python integer: a slot holds a 32-bit value, so the multiplication by the 24-bit prime never
carries into the next slot and one mask restores 32-bit wrap-around. This runs at about
100 MB/s in pure Python, fast enough to verify pages while backing up at moderate speed.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import xor
from typing import Final

__all__ = [
    "BLOCK_SIZE",
    "PAGE_HEADER_SIZE",
    "PAGE_LAYOUT_VERSION",
    "PD_VALID_FLAG_BITS",
    "RELSEG_SIZE",
    "PageHeader",
    "PageKind",
    "block_number",
    "classify_page",
    "is_new_page",
    "is_valid_header",
    "is_zero_page",
    "page_checksum",
    "page_checksums",
    "page_headers",
    "page_lsn",
    "parse_page_header",
    "valid_layout",
    "verify_page",
]

Buffer = bytes | bytearray | memoryview

BLOCK_SIZE: Final = 8192  # BLCKSZ (walg supports only the default)
RELSEG_SIZE: Final = 131072  # blocks per relation segment file (1 GiB)
PAGE_HEADER_SIZE: Final = 24  # SizeOfPageHeaderData
PAGE_LAYOUT_VERSION: Final = 4  # PG_PAGE_LAYOUT_VERSION
PD_VALID_FLAG_BITS: Final = 0x0007
_VALID_VERSION: Final = BLOCK_SIZE + PAGE_LAYOUT_VERSION

_HEADER: Final = struct.Struct("<IIHHHHHHI")
# A whole page of which only the header is unpacked: iter_unpack over a run of pages then
# reads every header at C speed.
_PAGE: Final = struct.Struct(f"<IIHHHHHHI{BLOCK_SIZE - PAGE_HEADER_SIZE}x")
_LSN: Final = struct.Struct("<II")
_ZERO_PAGE: Final = bytes(BLOCK_SIZE)

_N_SUMS: Final = 32
_ROWS: Final = BLOCK_SIZE // (4 * _N_SUMS)  # 64
_FNV_PRIME: Final = 16777619
_BASE_OFFSETS: Final = (
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
    0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
    0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
    0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
    0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
)  # fmt: skip
_CHUNK_PAGES: Final = 64  # pages hashed together (bounds the size of the big integers)


@dataclass(frozen=True, slots=True)
class PageHeader:
    """The fields of ``PageHeaderData``."""

    lsn: int
    checksum: int
    flags: int
    lower: int
    upper: int
    special: int
    pagesize_version: int
    prune_xid: int

    @property
    def page_size(self) -> int:
        """The page size recorded in the header (``PageGetPageSize``)."""
        return self.pagesize_version & 0xFF00

    @property
    def layout_version(self) -> int:
        """The page layout version recorded in the header (4 since PostgreSQL 8.3)."""
        return self.pagesize_version & 0x00FF


class PageKind(enum.Enum):
    """What a delta backup does with a page (WAL-G's ``SelectNewValidPage``)."""

    CHANGED = "changed"  # valid header, pd_lsn >= the base backup's start LSN: send it
    UNCHANGED = "unchanged"  # valid header, older pd_lsn: the base has it
    NEW = "new"  # pd_upper == 0 (never initialized, or extended): send it
    INVALID = "invalid"  # neither: the whole file must be sent


def parse_page_header(page: Buffer) -> PageHeader:
    """The header fields of ``page`` (at least 24 bytes)."""
    xlogid, xrecoff, *rest = _HEADER.unpack_from(page)
    return PageHeader((xlogid << 32) | xrecoff, *rest)


def page_lsn(page: Buffer) -> int:
    """``pd_lsn`` of ``page``: the LSN of the last WAL record that changed it."""
    xlogid: int
    xrecoff: int
    xlogid, xrecoff = _LSN.unpack_from(page)
    return (xlogid << 32) | xrecoff


def page_headers(data: Buffer) -> Iterator[tuple[int, int, int, int, int, int, int, int]]:
    """The header fields of each page of ``data`` (whole pages), in bulk:
    ``(lsn, checksum, flags, lower, upper, special, pagesize_version, prune_xid)``."""
    for xlogid, xrecoff, *rest in _PAGE.iter_unpack(data):
        yield ((xlogid << 32) | xrecoff, *rest)


def valid_layout(flags: int, lower: int, upper: int, special: int, version: int) -> bool:
    """WAL-G's header check without the LSN: known flags, pd_lower <= pd_upper <= pd_special
    inside the page, page size 8192 and layout version 4."""
    return (
        flags & ~PD_VALID_FLAG_BITS == 0
        and PAGE_HEADER_SIZE <= lower <= upper <= special <= BLOCK_SIZE
        and version == _VALID_VERSION
    )


def is_valid_header(header: PageHeader) -> bool:
    """WAL-G's header check for delta backups (``PostgresPageHeader.IsValid``).

    Stricter than PostgreSQL's ``PageIsVerified``: it also requires pd_lower >= 24, a page size
    and layout version of 8192 + 4 and a non-zero pd_lsn (pages never WAL-logged, as in
    unlogged relations or after wal_level=minimal loads, make the whole file be sent).
    """
    return header.lsn != 0 and valid_layout(
        header.flags, header.lower, header.upper, header.special, header.pagesize_version
    )


def is_new_page(page: Buffer) -> bool:
    """Whether ``page`` is new (``PageIsNew``: pd_upper == 0), e.g. zeroed by an extension."""
    upper: int = struct.unpack_from("<H", page, 14)[0]
    return upper == 0


def is_zero_page(page: Buffer) -> bool:
    """Whether every byte of ``page`` is zero."""
    return bytes(page) == _ZERO_PAGE if len(page) == BLOCK_SIZE else not any(bytes(page))


def classify_page(page: Buffer, since_lsn: int) -> PageKind:
    """What a delta backup based on a backup that started at ``since_lsn`` does with ``page``."""
    header = parse_page_header(page)
    if is_valid_header(header):
        return PageKind.CHANGED if header.lsn >= since_lsn else PageKind.UNCHANGED
    if header.upper == 0:
        return PageKind.NEW
    return PageKind.INVALID


def block_number(segment_number: int, block_in_segment: int) -> int:
    """The block number of a page in its relation, for file ``<relfilenode>.<segment_number>``.

    Checksums mix in this number, not the page's index inside the 1 GiB segment file.
    """
    return segment_number * RELSEG_SIZE + block_in_segment


# --- checksums ------------------------------------------------------------------------------


def page_checksum(page: Buffer, blkno: int) -> int:
    """``pg_checksum_page(page, blkno)``: the checksum PostgreSQL stores in pd_checksum."""
    if len(page) != BLOCK_SIZE:
        raise ValueError(f"a page is {BLOCK_SIZE} bytes, got {len(page)}")
    return page_checksums(page, blkno)[0]


def page_checksums(data: Buffer, first_blkno: int) -> list[int]:
    """Checksums of the consecutive pages in ``data``; the first one is block ``first_blkno``."""
    if len(data) % BLOCK_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of {BLOCK_SIZE}-byte pages")
    view = memoryview(data).cast("B")
    result: list[int] = []
    chunk = _CHUNK_PAGES * BLOCK_SIZE
    for start in range(0, len(view), chunk):
        sums = _checksum_blocks(view[start : start + chunk])
        blkno = first_blkno + start // BLOCK_SIZE
        result.extend(((s ^ (blkno + i)) & 0xFFFFFFFF) % 65535 + 1 for i, s in enumerate(sums))
    return result


def verify_page(page: Buffer, blkno: int) -> bool:
    """Whether ``page`` passes PostgreSQL's checksum test (``PageIsVerified``).

    A new page (pd_upper == 0) has no checksum and passes only if it is all zeros. Callers
    checking a live data directory should skip pages whose pd_lsn is at or after the backup's
    start LSN: those may be torn by a concurrent write and are restored from WAL anyway.
    """
    if is_new_page(page):
        return is_zero_page(page)
    stored: int = struct.unpack_from("<H", page, 8)[0]
    return page_checksum(page, blkno) == stored


def _checksum_blocks(data: memoryview) -> list[int]:
    """``pg_checksum_block`` (before block-number mixing) of each page in ``data``."""
    pages = len(data) // BLOCK_SIZE
    work = bytearray(data)
    for page in range(pages):
        work[page * BLOCK_SIZE + 8 : page * BLOCK_SIZE + 10] = b"\0\0"  # pd_checksum
    # Widen every uint32 to a 64-bit slot: slot (page, row, column) at page*2048 + row*32 + col.
    wide = bytearray(len(work) * 2)
    for byte in range(4):
        wide[byte::8] = work[byte::4]
    row_bytes = _N_SUMS * 8
    page_bytes = BLOCK_SIZE * 2
    lanes = pages * _N_SUMS
    mask = _lane_mask(lanes)
    sums = int.from_bytes(_BASE_BYTES * pages, "little")
    for row in range(_ROWS):
        offset = row * row_bytes
        values = b"".join(
            wide[p * page_bytes + offset : p * page_bytes + offset + row_bytes]
            for p in range(pages)
        )
        tmp = sums ^ int.from_bytes(values, "little")
        sums = ((tmp * _FNV_PRIME) ^ (tmp >> 17)) & mask
    for _ in range(2):
        sums = ((sums * _FNV_PRIME) ^ (sums >> 17)) & mask
    slots = struct.unpack(f"<{lanes}Q", sums.to_bytes(lanes * 8, "little"))
    return [_fold(slots[p * _N_SUMS : (p + 1) * _N_SUMS]) for p in range(pages)]


def _fold(values: Sequence[int]) -> int:
    return reduce(xor, values, 0)


_BASE_BYTES: Final = struct.pack(f"<{_N_SUMS}Q", *_BASE_OFFSETS)
_MASKS: dict[int, int] = {}


def _lane_mask(lanes: int) -> int:
    mask = _MASKS.get(lanes)
    if mask is None:
        mask = _MASKS[lanes] = int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * lanes, "little")
    return mask
