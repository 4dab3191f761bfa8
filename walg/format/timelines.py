"""The WAL archive seen as timelines and segment ranges (pure rules, no I/O).

What ``wal-verify`` and ``wal-show`` compute, with WAL-G's rules
(``internal/databases/postgres``: ``wal_segment_runner.go``, ``wal_segment_scanner.go``,
``integrity_check_runner.go``, ``timeline_check_runner.go``, ``wal_show_handler.go``):

- An archived name counts as segment ``(timeline, number)`` when it is a 24-hex-digit
  segment name, bare or with one compression extension (``.lz4``, ``.br`` ...). Backup
  history files (``.backup``) and partial segments (``.partial``) are not segments: a
  partial segment is not what recovery asks for (WAL-G counts an uncompressed ``.partial``
  as the full segment; walg does not). ``TTTTTTTT.history[.ext]`` names a timeline.
- The integrity scan walks back from the segment before the current one to the stop
  segment (the earliest usable backup's start), following the current timeline's history:
  at the segment holding a switch point it steps onto the parent timeline, unless the
  previous segment exists on the current timeline (a history record "not from our
  history", as WAL-G says). Missing segments are MISSING_DELAYED until the first found one
  (at most ``delayed`` of them), then MISSING_UPLOADING within the next ``uploading``
  segments, then MISSING_LOST.
- Ranges are the scanned segments, oldest first, collapsed by timeline and status.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from walg.postgres.wal import (
    DEFAULT_SEGMENT_SIZE,
    history_entries,
    is_segment_name,
    parse_segment_name,
    segment_name,
    segment_number,
)

__all__ = [
    "Archive",
    "CheckStatus",
    "HistoryRecord",
    "ScannedSegment",
    "Segment",
    "SegmentRange",
    "SegmentStatus",
    "TimelineInfo",
    "archive_contents",
    "backup_is_usable",
    "collapse",
    "earliest_usable",
    "integrity_status",
    "missing_segments",
    "parse_history_records",
    "scan_integrity",
    "switch_segments",
    "switches_by_timeline",
    "timeline_infos",
    "timeline_status",
]

Segment = tuple[int, int]
"""A segment as ``(timeline, segment number)``."""


class SegmentStatus(enum.Enum):
    """What the integrity scan found for one segment (WAL-G's names)."""

    FOUND = "FOUND"
    MISSING_DELAYED = "MISSING_DELAYED"
    MISSING_UPLOADING = "MISSING_UPLOADING"
    MISSING_LOST = "MISSING_LOST"


class CheckStatus(enum.Enum):
    """The verdict of one wal-verify check (WAL-G's names)."""

    OK = "OK"
    WARNING = "WARNING"
    FAILURE = "FAILURE"


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One line of a timeline history file: ``parent`` ended at ``switch_lsn``."""

    parent: int
    switch_lsn: int


@dataclass(frozen=True, slots=True)
class ScannedSegment:
    timeline: int
    number: int
    status: SegmentStatus


@dataclass(frozen=True, slots=True)
class SegmentRange:
    """Consecutive segments of one timeline with one status (a row of wal-verify)."""

    timeline: int
    first: int  # segment number
    last: int
    count: int
    status: SegmentStatus


@dataclass(frozen=True, slots=True)
class Archive:
    """What ``wal_005/`` holds: its segments, and the timelines named by any WAL file."""

    segments: frozenset[Segment]
    history_timelines: frozenset[int]

    @property
    def highest_timeline(self) -> int:
        """The highest timeline of any segment or history file; 0 for an empty archive."""
        return max({tli for tli, _ in self.segments} | self.history_timelines, default=0)


def _archived_segment(name: str, segment_size: int) -> Segment | None:
    stem, _, ext = name.partition(".")
    if not is_segment_name(stem) or "." in ext or ext in ("partial", "backup"):
        return None
    try:
        return parse_segment_name(stem, segment_size)
    except ValueError:  # a last part too large for this segment size
        return None


def _history_timeline(name: str) -> int | None:
    stem, _, ext = name.partition(".")
    if len(stem) != 8 or (ext != "history" and not ext.startswith("history.")):
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


def archive_contents(
    names: Iterable[str], segment_size: int = DEFAULT_SEGMENT_SIZE
) -> Archive:
    """The segments and history timelines among object ``names`` (base names in wal_005)."""
    segments: set[Segment] = set()
    histories: set[int] = set()
    for name in names:
        segment = _archived_segment(name, segment_size)
        if segment is not None:
            segments.add(segment)
        elif (timeline := _history_timeline(name)) is not None:
            histories.add(timeline)
    return Archive(frozenset(segments), frozenset(histories))


def parse_history_records(text: str) -> list[HistoryRecord]:
    """The records of a timeline history file, in file order (ValueError if malformed)."""
    return [HistoryRecord(parent, lsn) for parent, lsn in history_entries(text)]


def switch_segments(
    records: Sequence[HistoryRecord], segment_size: int = DEFAULT_SEGMENT_SIZE
) -> dict[int, int]:
    """``{number of the segment holding a switch point: parent timeline}`` (later lines win)."""
    return {segment_number(r.switch_lsn, segment_size): r.parent for r in records}


def switches_by_timeline(
    records: Sequence[HistoryRecord], segment_size: int = DEFAULT_SEGMENT_SIZE
) -> dict[int, int]:
    """``{parent timeline: number of the segment where it ended}``."""
    return {r.parent: segment_number(r.switch_lsn, segment_size) for r in records}


# -- the integrity scan ---------------------------------------------------------------------


def scan_integrity(
    current: Segment,
    stop: int,
    present: frozenset[Segment] | set[Segment],
    switches: Mapping[int, int],
    *,
    uploading: int,
    delayed: int,
) -> list[ScannedSegment]:
    """Every segment from the one before ``current`` back to segment number ``stop``
    (included), newest first, with its status; ``switches`` as :func:`switch_segments`."""
    timeline, number = current
    scanned: list[ScannedSegment] = []
    phases = (
        (delayed, True, SegmentStatus.MISSING_DELAYED),
        (uploading, False, SegmentStatus.MISSING_UPLOADING),
        (None, False, SegmentStatus.MISSING_LOST),
    )
    for limit, stop_on_found, missing in phases:
        steps = 0
        while (limit is None or steps < limit) and number > stop:
            previous = (timeline, number - 1)
            parent = switches.get(number)
            if parent is not None and previous not in present:
                previous = (parent, number - 1)
            timeline, number = previous
            steps += 1
            if previous in present:
                scanned.append(ScannedSegment(timeline, number, SegmentStatus.FOUND))
                if stop_on_found:
                    break
            else:
                scanned.append(ScannedSegment(timeline, number, missing))
    return scanned


def collapse(scanned: Iterable[ScannedSegment]) -> list[SegmentRange]:
    """Scanned segments, oldest first, joined into ranges of one timeline and status."""
    ranges: list[SegmentRange] = []
    for seg in sorted(scanned, key=lambda s: s.number):
        last = ranges[-1] if ranges else None
        if last is not None and (last.timeline, last.status) == (seg.timeline, seg.status):
            ranges[-1] = SegmentRange(
                last.timeline, last.first, seg.number, last.count + 1, last.status
            )
        else:
            ranges.append(SegmentRange(seg.timeline, seg.number, seg.number, 1, seg.status))
    return ranges


def integrity_status(ranges: Sequence[SegmentRange], no_backups: bool) -> CheckStatus:
    """OK without missing segments; WARNING with only delayed or uploading ones (or, when no
    backup bounds the scan, lost ones before the first found range); else FAILURE."""
    status = CheckStatus.OK
    found_before = False
    for row in ranges:
        if row.status is SegmentStatus.FOUND:
            found_before = True
        elif row.status is SegmentStatus.MISSING_LOST:
            if not (no_backups and not found_before):
                return CheckStatus.FAILURE
            status = CheckStatus.WARNING
        else:
            status = CheckStatus.WARNING
    return status


def timeline_status(current: int, highest: int) -> CheckStatus:
    """OK when the current timeline is the highest in storage, FAILURE when it is not,
    WARNING when storage names no timeline."""
    if highest <= 0:
        return CheckStatus.WARNING
    return CheckStatus.OK if current == highest else CheckStatus.FAILURE


# -- which backup bounds the scan -----------------------------------------------------------


def backup_is_usable(
    start: Segment,
    current_timeline: int,
    ended: Mapping[int, int],
    *,
    permanent: bool = False,
    allow_permanent: bool = False,
) -> bool:
    """Whether a backup starting at segment ``start`` can begin the scan (WAL-G's
    ``checkBackupIsCorrect``). ``ended`` is :func:`switches_by_timeline` of the current
    timeline's history; without history every non-permanent backup is usable."""
    if permanent and not allow_permanent:
        return False
    if not ended:
        return True
    timeline, number = start
    began = ended.get(timeline - 1) if timeline > 1 else None
    if began is not None and number < began:
        return False
    if timeline == current_timeline:
        return True
    end = ended.get(timeline)
    return end is not None and number < end


def earliest_usable(
    backups: Iterable[tuple[str, Segment, bool]], current_timeline: int, ended: Mapping[int, int]
) -> tuple[str, int] | None:
    """``(name, start segment number)`` of the usable backup that starts first, among
    ``(name, start segment, is permanent)``; None if none is usable."""
    best: tuple[str, int] | None = None
    for name, start, permanent in backups:
        if not backup_is_usable(start, current_timeline, ended, permanent=permanent):
            continue
        if best is None or start[1] < best[1]:
            best = (name, start[1])
    return best


# -- wal-show -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineInfo:
    """One timeline in storage: its segments, gaps and (from its history file) parent."""

    id: int
    parent_id: int
    switch_point_lsn: int
    first: int  # segment numbers
    last: int
    count: int
    missing: tuple[int, ...]  # newest first, as WAL-G lists them

    @property
    def range_size(self) -> int:
        return self.last - self.first + 1

    @property
    def status(self) -> str:
        return "LOST_SEGMENTS" if self.missing else "OK"

    def start_segment(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
        return segment_name(self.id, self.first, segment_size)

    def end_segment(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
        return segment_name(self.id, self.last, segment_size)


def missing_segments(numbers: Iterable[int]) -> tuple[int, ...]:
    """The gaps between the lowest and highest of ``numbers``, newest first."""
    have = set(numbers)
    if not have:
        return ()
    return tuple(n for n in range(max(have) - 1, min(have), -1) if n not in have)


def timeline_infos(
    segments: Iterable[Segment], histories: Mapping[int, Sequence[HistoryRecord]]
) -> list[TimelineInfo]:
    """One :class:`TimelineInfo` per timeline that has segments, by timeline; the parent and
    switch point are the last record of that timeline's history (0 and 0 without one)."""
    by_timeline: dict[int, list[int]] = {}
    for timeline, number in segments:
        by_timeline.setdefault(timeline, []).append(number)
    infos = []
    for timeline, numbers in sorted(by_timeline.items()):
        records = histories.get(timeline) or ()
        parent = records[-1] if records else HistoryRecord(0, 0)
        infos.append(
            TimelineInfo(
                id=timeline,
                parent_id=parent.parent,
                switch_point_lsn=parent.switch_lsn,
                first=min(numbers),
                last=max(numbers),
                count=len(set(numbers)),
                missing=missing_segments(numbers),
            )
        )
    return infos
