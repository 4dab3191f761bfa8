"""WAL positions and WAL file names, as PostgreSQL computes them (pure functions, no I/O).

An LSN is a plain ``int`` (a 64-bit byte position in the WAL stream); :func:`parse_lsn` and
:func:`format_lsn` convert to and from PostgreSQL's ``"16/B374D848"`` text form.

Names follow ``src/include/access/xlog_internal.h``:

- segment ``TTTTTTTTXXXXXXXXYYYYYYYY``: timeline, then the segment number split into
  ``segno // segments_per_id`` and ``segno % segments_per_id`` where
  ``segments_per_id = 2**32 // segment_size`` (``XLogFileName``, ``XLByteToSeg``);
- timeline history ``TTTTTTTT.history`` (``TLHistoryFileName``);
- backup history ``<segment>.OOOOOOOO.backup`` where O is the start LSN's offset in its
  segment (``BackupHistoryFileName``);
- partial segment ``<segment>.partial`` (written at promotion).

Only upper-case hex is accepted in names, as in PostgreSQL's ``IsXLogFileName``. Malformed
input raises :class:`ValueError` with a message naming the value; callers turn it into a
user-facing error.
"""

from __future__ import annotations

import enum
import re
from typing import Final

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAX_LSN",
    "MAX_SEGMENT_SIZE",
    "MAX_TIMELINE",
    "MIN_SEGMENT_SIZE",
    "WalFileKind",
    "backup_history_file_name",
    "check_segment_size",
    "format_lsn",
    "history_entries",
    "history_file_name",
    "is_backup_history_name",
    "is_history_name",
    "is_partial_name",
    "is_segment_name",
    "next_segment_name",
    "parse_history",
    "parse_lsn",
    "parse_segment_name",
    "previous_segment_name",
    "segment_name",
    "segment_number",
    "segment_number_from_name",
    "segment_offset",
    "segment_start_lsn",
    "segments_per_xlog_id",
    "timeline_from_name",
    "wal_file_kind",
    "wal_file_name",
]

DEFAULT_SEGMENT_SIZE: Final = 16 * 1024 * 1024
MIN_SEGMENT_SIZE: Final = 1024 * 1024  # WalSegMinSize
MAX_SEGMENT_SIZE: Final = 1024 * 1024 * 1024  # WalSegMaxSize
MAX_LSN: Final = 2**64 - 1
MAX_TIMELINE: Final = 2**32 - 1

_HEX8 = "[0-9A-F]{8}"
_SEGMENT_RE: Final = re.compile(f"({_HEX8})({_HEX8})({_HEX8})")
_HISTORY_RE: Final = re.compile(f"({_HEX8})\\.history")
_BACKUP_RE: Final = re.compile(f"({_HEX8})({_HEX8})({_HEX8})\\.({_HEX8})\\.backup")
_PARTIAL_RE: Final = re.compile(f"({_HEX8})({_HEX8})({_HEX8})\\.partial")
_LSN_RE: Final = re.compile("([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


class WalFileKind(enum.Enum):
    """What a file name in pg_wal (or in the WAL archive) stands for."""

    SEGMENT = "segment"
    HISTORY = "history"
    BACKUP = "backup"
    PARTIAL = "partial"


# --- LSN ------------------------------------------------------------------------------------


def parse_lsn(text: str) -> int:
    """The LSN written as ``"16/B374D848"`` (hex, 1-8 digits each side, any case) as an int."""
    match = _LSN_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid LSN {text!r}: expected two hex numbers like '16/B374D848'")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    """``lsn`` in PostgreSQL's ``%X/%X`` form (upper case, no padding), e.g. ``"16/B374D848"``."""
    _check_lsn(lsn)
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _check_lsn(lsn: int) -> None:
    if not 0 <= lsn <= MAX_LSN:
        raise ValueError(f"LSN {lsn} is outside 0..2**64-1")


# --- segment arithmetic ---------------------------------------------------------------------


def check_segment_size(segment_size: int) -> int:
    """``segment_size`` if PostgreSQL allows it (a power of two from 1 MiB to 1 GiB)."""
    valid = MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE
    if not valid or segment_size & (segment_size - 1):
        raise ValueError(
            f"invalid WAL segment size {segment_size}: must be a power of two "
            "between 1 MiB and 1 GiB"
        )
    return segment_size


def segments_per_xlog_id(segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """How many segments share one middle part of a name (``XLogSegmentsPerXLogId``)."""
    return 0x1_0000_0000 // check_segment_size(segment_size)


def segment_number(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The number of the segment holding ``lsn`` (``XLByteToSeg``)."""
    _check_lsn(lsn)
    return lsn // check_segment_size(segment_size)


def segment_offset(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Where ``lsn`` lies inside its segment (``XLogSegmentOffset``)."""
    _check_lsn(lsn)
    return lsn & (check_segment_size(segment_size) - 1)


def segment_start_lsn(segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The LSN of the first byte of segment ``segno`` (``XLogSegNoOffsetToRecPtr`` with 0)."""
    lsn = segno * check_segment_size(segment_size)
    if segno < 0 or lsn > MAX_LSN:
        raise ValueError(f"segment number {segno} is out of range")
    return lsn


# --- names ----------------------------------------------------------------------------------


def _check_timeline(timeline: int) -> None:
    if not 0 <= timeline <= MAX_TIMELINE:
        raise ValueError(f"timeline {timeline} is outside 0..2**32-1")


def segment_name(timeline: int, segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The 24-hex-digit name of segment ``segno`` on ``timeline`` (``XLogFileName``)."""
    _check_timeline(timeline)
    per_id = segments_per_xlog_id(segment_size)
    segment_start_lsn(segno, segment_size)  # range check
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def wal_file_name(timeline: int, lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The name of the segment on ``timeline`` that holds ``lsn`` (as ``pg_walfile_name``).

    Note: ``pg_walfile_name`` itself maps an LSN exactly on a segment boundary to the previous
    segment (it names the segment an end-of-record LSN belongs to); this function does not.
    """
    return segment_name(timeline, segment_number(lsn, segment_size), segment_size)


def parse_segment_name(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int]:
    """``(timeline, segment number)`` of a 24-hex-digit segment name (``XLogFromFileName``)."""
    match = _SEGMENT_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"invalid WAL segment name {name!r}: expected 24 upper-case hex digits")
    timeline, log, seg = (int(part, 16) for part in match.groups())
    per_id = segments_per_xlog_id(segment_size)
    if seg >= per_id:
        raise ValueError(
            f"invalid WAL segment name {name!r}: its last part must be below {per_id:08X} "
            f"for {segment_size}-byte segments"
        )
    return timeline, log * per_id + seg


def segment_number_from_name(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment number encoded in a segment name."""
    return parse_segment_name(name, segment_size)[1]


def next_segment_name(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The name of the segment after ``name`` on the same timeline."""
    timeline, segno = parse_segment_name(name, segment_size)
    return segment_name(timeline, segno + 1, segment_size)


def previous_segment_name(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The name of the segment before ``name`` on the same timeline."""
    timeline, segno = parse_segment_name(name, segment_size)
    if segno == 0:
        raise ValueError(f"WAL segment {name!r} is the first one: it has no predecessor")
    return segment_name(timeline, segno - 1, segment_size)


def history_file_name(timeline: int) -> str:
    """The name of the history file of ``timeline``, e.g. ``00000002.history``."""
    _check_timeline(timeline)
    return f"{timeline:08X}.history"


def parse_history(text: str) -> dict[int, int]:
    """A timeline history file's switch points: ``{parent timeline: LSN where the history
    left it}``. Lines are ``<parent TLI> <switch LSN> <reason>``; '#' starts a comment."""
    return dict(history_entries(text))


def history_entries(text: str) -> list[tuple[int, int]]:
    """A timeline history file's ``(parent timeline, switch LSN)`` lines, in file order
    (``readTimeLineHistory``: blank lines and lines starting with '#' are skipped)."""
    entries: list[tuple[int, int]] = []
    for line in text.splitlines():
        fields = line.split(None, 2)
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError(f"malformed timeline history line {line!r}")
        entries.append((int(fields[0]), parse_lsn(fields[1])))
    return entries


def backup_history_file_name(
    timeline: int, start_lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> str:
    """The name of the ``.backup`` file a backup starting at ``start_lsn`` leaves in pg_wal."""
    name = wal_file_name(timeline, start_lsn, segment_size)
    return f"{name}.{segment_offset(start_lsn, segment_size):08X}.backup"


# --- classifying names ----------------------------------------------------------------------


def is_segment_name(name: str) -> bool:
    """Whether ``name`` is a plain WAL segment name (24 upper-case hex digits)."""
    return _SEGMENT_RE.fullmatch(name) is not None


def is_history_name(name: str) -> bool:
    """Whether ``name`` is a timeline history file name (``TTTTTTTT.history``)."""
    return _HISTORY_RE.fullmatch(name) is not None


def is_backup_history_name(name: str) -> bool:
    """Whether ``name`` is a backup history file name (``<segment>.OOOOOOOO.backup``)."""
    return _BACKUP_RE.fullmatch(name) is not None


def is_partial_name(name: str) -> bool:
    """Whether ``name`` is a partial segment name (``<segment>.partial``)."""
    return _PARTIAL_RE.fullmatch(name) is not None


def wal_file_kind(name: str) -> WalFileKind | None:
    """What kind of WAL file ``name`` is, or None if it is none of them."""
    for kind, pattern in _KINDS:
        if pattern.fullmatch(name) is not None:
            return kind
    return None


_KINDS: Final = (
    (WalFileKind.SEGMENT, _SEGMENT_RE),
    (WalFileKind.HISTORY, _HISTORY_RE),
    (WalFileKind.BACKUP, _BACKUP_RE),
    (WalFileKind.PARTIAL, _PARTIAL_RE),
)


def timeline_from_name(name: str) -> int:
    """The timeline a segment, history, backup history or partial file name belongs to."""
    if wal_file_kind(name) is None:
        raise ValueError(f"{name!r} is not a WAL file name")
    return int(name[:8], 16)
