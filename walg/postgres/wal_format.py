"""Whether a WAL file's content fits its name (pure functions, no I/O).

wal-push refuses to archive, and wal-fetch to restore, a file whose content cannot be what
its name says. A name's kind (see :func:`walg.postgres.wal.wal_file_kind`) decides the rule:

- segment ``TTTTTTTTXXXXXXXXYYYYYYYY`` and partial segment ``<segment>.partial`` (the last
  segment of an old timeline, renamed at promotion; full size too): the file starts with
  the long page header of that segment (``XLogLongPageHeaderData``, checked as
  ``XLogReaderValidatePageHeader`` does): an ``xlp_magic`` from PostgreSQL 9.6's up to 0xD1FF
  (PostgreSQL only raises it: a future major version's, a beta's or a fork's between known
  ones must not stop archiving); ``XLP_LONG_HEADER`` set in ``xlp_info`` and, with a known
  magic only, no unknown flag (a future version may add one); ``xlp_seg_size`` a power of
  two from 1 MiB to 1 GiB and equal to the file's size; ``xlp_xlog_blcksz`` a power of two
  from 1 to 64 KiB; ``xlp_pageaddr`` the first byte of the segment the name numbers (with
  that segment size); ``xlp_tli`` from 1 up to the name's timeline. Not equal to it: at
  promotion PostgreSQL copies the old timeline's last segment, up to the switch point, into
  the new timeline's first segment (``XLogInitNewTimeline``), so that file's first page
  keeps the old timeline's ID (or an older one after quick successive promotions);
- timeline history ``TTTTTTTT.history``: text lines ``<parent TLI>\\t<switch LSN>\\t<reason>``
  (``readTimeLineHistory``), at least one, parent timelines increasing and below the name's
  timeline (so timeline 1 has no history file);
- backup history ``<segment>.OOOOOOOO.backup``: text starting with
  ``START WAL LOCATION: <LSN> (file <segment>)`` naming the same segment and offset.

Other names are not checked (wal-push stores them with a warning). Multi-byte fields are
read little-endian, as PostgreSQL writes them on the little-endian hosts walg supports.
Problems raise :class:`ValueError` whose message says what is wrong (without the path);
callers turn it into a user-facing error.
"""

from __future__ import annotations

import contextlib
import re
import struct
from dataclasses import dataclass
from typing import Final

from walg.postgres.wal import (
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    WalFileKind,
    check_segment_size,
    format_lsn,
    history_entries,
    is_segment_name,
    parse_lsn,
    parse_segment_name,
    segment_name,
    wal_file_kind,
)

__all__ = [
    "LONG_HEADER_SIZE",
    "MAX_TEXT_SIZE",
    "PAGE_MAGIC",
    "LongPageHeader",
    "check_backup_history",
    "check_history",
    "check_segment",
    "check_wal_file",
    "head_size",
    "segment_size_of",
]

# XLogLongPageHeaderData: xlp_magic, xlp_info, xlp_tli, xlp_pageaddr, xlp_rem_len (padded to
# 24 bytes), then xlp_sysid, xlp_seg_size, xlp_xlog_blcksz.
_LONG_HEADER: Final = struct.Struct("<HHIQI4xQII")
LONG_HEADER_SIZE: Final = _LONG_HEADER.size
XLP_LONG_HEADER: Final = 0x0002
XLP_ALL_FLAGS: Final = 0x000F  # FIRST_IS_CONTRECORD, LONG_HEADER, BKP_REMOVABLE, ...OVERWRITE...

PAGE_MAGIC: Final = {  # XLOG_PAGE_MAGIC of each major version (xlog_internal.h)
    "9.6": 0xD093,
    "10": 0xD097,
    "11": 0xD098,
    "12": 0xD101,
    "13": 0xD106,
    "14": 0xD10D,
    "15": 0xD110,
    "16": 0xD113,
    "17": 0xD116,
}
# PostgreSQL only ever raises the magic: a newer major version's is above 17's, a beta's or
# a fork's may lie between known ones. Any magic from the oldest version walg supports up to
# this ceiling is accepted, so that such a server keeps archiving; the page address, size and
# long-header checks still catch a misnamed or damaged file.
_MAGIC_RANGE: Final = range(min(PAGE_MAGIC.values()), 0xD1FF + 1)
_KNOWN_MAGIC: Final = frozenset(PAGE_MAGIC.values())

MAX_TEXT_SIZE: Final = 1 << 20
"""Largest history or backup history file accepted (real ones are a few hundred bytes)."""

_BACKUP_START: Final = (  # compiled on first use (re's cache): not on every wal-push
    rb"START WAL LOCATION: ([0-9A-Fa-f]+/[0-9A-Fa-f]+) \(file ([0-9A-F]{24})\)"
)
_SEGMENT_SIZES: Final = tuple(
    1 << n for n in range(MIN_SEGMENT_SIZE.bit_length() - 1, MAX_SEGMENT_SIZE.bit_length())
)


@dataclass(frozen=True)
class LongPageHeader:
    """The first page header of a WAL segment (``XLogLongPageHeaderData``)."""

    magic: int
    info: int
    tli: int
    pageaddr: int
    rem_len: int
    sysid: int
    seg_size: int
    blcksz: int

    @classmethod
    def parse(cls, head: bytes) -> LongPageHeader:
        """The header in the first :data:`LONG_HEADER_SIZE` bytes of ``head``."""
        if len(head) < LONG_HEADER_SIZE:
            raise ValueError(f"it is {len(head)} bytes, too short for a WAL page header")
        return cls(*_LONG_HEADER.unpack_from(head))

    def pack(self) -> bytes:
        """The header's bytes (for tests and tools that build segments)."""
        return _LONG_HEADER.pack(
            self.magic, self.info, self.tli, self.pageaddr, self.rem_len,
            self.sysid, self.seg_size, self.blcksz,
        )  # fmt: skip


def head_size(name: str) -> int:
    """How many leading bytes of WAL file ``name`` :func:`check_wal_file` needs."""
    kind = wal_file_kind(name)
    if kind in (WalFileKind.SEGMENT, WalFileKind.PARTIAL):
        return LONG_HEADER_SIZE
    if kind in (WalFileKind.HISTORY, WalFileKind.BACKUP):
        return MAX_TEXT_SIZE
    return 0


def check_wal_file(name: str, size: int, head: bytes) -> int | None:
    """Check a ``size``-byte file named ``name`` whose first bytes are ``head`` (at least
    :func:`head_size` of them, or the whole file); ValueError saying what is wrong.

    Returns the segment size for a segment or partial segment, else None."""
    kind = wal_file_kind(name)
    if kind in (WalFileKind.SEGMENT, WalFileKind.PARTIAL):
        return check_segment(name[:24], size, head)
    if kind is WalFileKind.HISTORY:
        check_history(name, size, head)
    elif kind is WalFileKind.BACKUP:
        check_backup_history(name, size, head)
    return None


def check_segment(name: str, size: int, head: bytes) -> int:
    """Check that a ``size``-byte file starting with ``head`` is WAL segment ``name``;
    return its segment size."""
    if size == 0:
        raise ValueError("it is empty")
    header = LongPageHeader.parse(head[:size])
    if header.magic not in _MAGIC_RANGE:
        raise ValueError(
            f"it does not start with a WAL page header (magic 0x{header.magic:04X} is no "
            "PostgreSQL version's)"
        )
    if not _first_page_flags(header):
        raise ValueError(
            f"its first page header is not a segment's first (xlp_info 0x{header.info:04X})"
        )
    seg_size = _declared_size(header)
    if size != seg_size:
        raise ValueError(f"it is {size} bytes, but its header says segments are {seg_size}")
    timeline, segno = parse_segment_name(name, seg_size)
    start = segno * seg_size
    if header.pageaddr != start:
        raise ValueError(
            f"its first page is at {format_lsn(header.pageaddr)}, but segment {name} starts "
            f"at {format_lsn(start)}"
        )
    if not 1 <= header.tli <= timeline:
        raise ValueError(
            f"its first page is on timeline {header.tli}, not on timeline {timeline} of its "
            "name or an earlier one"
        )
    return seg_size


def _first_page_flags(header: LongPageHeader) -> bool:
    """Whether ``xlp_info`` is a segment's first page's: XLP_LONG_HEADER set, and no flag
    unknown to the version whose magic it is (a version walg does not know may add flags)."""
    if not header.info & XLP_LONG_HEADER:
        return False
    return header.magic not in _KNOWN_MAGIC or not header.info & ~XLP_ALL_FLAGS


def _declared_size(header: LongPageHeader) -> int:
    """The segment size ``header`` declares, if PostgreSQL could have written it."""
    blcksz = header.blcksz
    if not 1024 <= blcksz <= 65536 or blcksz & (blcksz - 1):
        raise ValueError(f"its header declares an impossible WAL block size {blcksz}")
    try:
        return check_segment_size(header.seg_size)
    except ValueError:
        raise ValueError(
            f"its header declares an impossible segment size {header.seg_size}"
        ) from None


def _text(kind: str, size: int, head: bytes) -> str:
    if size > MAX_TEXT_SIZE:
        raise ValueError(f"it is {size} bytes, too large for a {kind} file")
    if len(head) < size:
        raise ValueError(f"only {len(head)} of its {size} bytes were read")
    # Reasons may hold a restore point's name in any encoding: only digits are checked.
    return head[:size].decode("latin-1")


def check_history(name: str, size: int, head: bytes) -> None:
    """Check that a ``size``-byte file holding ``head`` is timeline history ``name``."""
    timeline = int(name[:8], 16)
    if timeline < 2:
        raise ValueError(f"timeline {timeline} has no history file")
    entries = history_entries(_text("timeline history", size, head))
    if not entries:
        raise ValueError("it names no parent timeline")
    last = 0
    for parent, _lsn in entries:
        if not last < parent < timeline:
            raise ValueError(
                f"its parent timelines must increase and be below {timeline}; "
                f"{parent} follows {last}"
            )
        last = parent


def check_backup_history(name: str, size: int, head: bytes) -> None:
    """Check that a ``size``-byte file holding ``head`` is backup history file ``name``
    (``<segment>.<offset>.backup``, as ``BackupHistoryFileName`` names it)."""
    text = _text("backup history", size, head).encode("latin-1")
    match = re.match(_BACKUP_START, text)
    if match is None:
        raise ValueError("it does not start with 'START WAL LOCATION: <LSN> (file <segment>)'")
    lsn, segment = parse_lsn(match.group(1).decode()), match.group(2).decode()
    offset = int(name[25:33], 16)
    fits = segment[8:] == name[8:24] and any(
        lsn % size_ == offset and segment_name(1, lsn // size_, size_)[8:] == name[8:24]
        for size_ in _SEGMENT_SIZES
    )
    if not fits:
        raise ValueError(
            f"it starts at {format_lsn(lsn)} in {segment}, which its name does not name"
        )


def segment_size_of(head: bytes, name: str, size: int = 0, checked: bool = True) -> int | None:
    """The segment size a WAL segment's first bytes declare, if they are a valid first
    page header of segment ``name`` (:func:`check_segment`, for a
    file of the declared size); else None. Not ``checked`` (WALG_WAL_CHECK_CONTENT=false):
    the file's ``size``, if segments can have that size."""
    if not checked and is_segment_name(name):
        with contextlib.suppress(ValueError):
            return check_segment_size(size)
    if len(head) < LONG_HEADER_SIZE or not is_segment_name(name) or not checked:
        return None
    try:
        return check_segment(name, LongPageHeader.parse(head).seg_size, head)
    except ValueError:
        return None
