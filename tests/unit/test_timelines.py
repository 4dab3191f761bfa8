"""wal-verify and wal-show, pure parts and flows on in-memory storage: WAL-G's scan rules
(statuses, timeline switches, which backup bounds the scan), its output formats."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers.synthetic_backups import at, put_backup, put_wal

from walg.backup import wal_report
from walg.backup.wal_report import CheckResult, TimelineDetails
from walg.backup.wal_show import show
from walg.backup.wal_verify import Position, run_checks
from walg.errors import BackupNotFound, IntegrityError
from walg.format.timelines import (
    CheckStatus,
    HistoryRecord,
    ScannedSegment,
    SegmentRange,
    SegmentStatus,
    archive_contents,
    backup_is_usable,
    collapse,
    integrity_status,
    missing_segments,
    parse_history_records,
    scan_integrity,
    switch_segments,
    timeline_infos,
    timeline_status,
)
from walg.postgres.wal import DEFAULT_SEGMENT_SIZE as SEG
from walg.storage.memory import MemoryStorage

FOUND, LOST = SegmentStatus.FOUND, SegmentStatus.MISSING_LOST
UPLOADING, DELAYED = SegmentStatus.MISSING_UPLOADING, SegmentStatus.MISSING_DELAYED


def statuses(scanned: list[ScannedSegment]) -> dict[int, tuple[int, SegmentStatus]]:
    return {s.number: (s.timeline, s.status) for s in scanned}


# -- names ----------------------------------------------------------------------------------


def test_archive_contents_reads_segments_and_histories() -> None:
    """Segments count bare or with one extension; .partial and .backup files do not;
    history files name timelines."""
    archive = archive_contents([
        "000000010000000000000001.lz4", "000000010000000000000002",
        "000000010000000000000003.partial", "000000010000000000000003.partial.lz4",
        "000000010000000000000002.00000028.backup.lz4", "00000002.history.br",
        "00000003.history", "junk", "walg_marker.json",
    ])
    assert archive.segments == {(1, 1), (1, 2)}
    assert archive.history_timelines == {2, 3}
    assert archive.highest_timeline == 3
    assert archive_contents([]).highest_timeline == 0


def test_history_records_and_switch_segments() -> None:
    """PostgreSQL's history file lines (blank lines between, tab-separated reasons)."""
    text = "1\t0/3000158\tno recovery target specified\n\n2\t0/50000A0\tbefore 2024-01-01\n"
    records = parse_history_records(text)
    assert records == [HistoryRecord(1, 0x3000158), HistoryRecord(2, 0x50000A0)]
    assert switch_segments(records) == {3: 1, 5: 2}
    with pytest.raises(ValueError):
        parse_history_records("x\t0/1\tbad\n")


# -- the scan -------------------------------------------------------------------------------


def test_scan_of_a_complete_archive_finds_every_segment() -> None:
    """From the segment before the current one down to the stop segment, all FOUND."""
    present = {(1, n) for n in range(2, 10)}
    scanned = scan_integrity((1, 10), 2, present, {}, uploading=16, delayed=0)
    assert [s.number for s in scanned] == list(range(9, 1, -1))
    assert {s.status for s in scanned} == {FOUND}


def test_scan_statuses_of_missing_segments() -> None:
    """Missing just before the newest found one: DELAYED (up to the setting); the next
    `uploading` segments: UPLOADING; older ones: LOST."""
    present = {(1, n) for n in range(1, 40)} - {38, 39, 35, 10}
    present -= {(1, 38), (1, 39), (1, 35), (1, 10)}
    scanned = statuses(scan_integrity((1, 40), 1, present, {}, uploading=4, delayed=5))
    assert scanned[39] == (1, DELAYED) and scanned[38] == (1, DELAYED)
    assert scanned[37] == (1, FOUND)
    assert scanned[35] == (1, UPLOADING)
    assert scanned[10] == (1, LOST)
    # WAL-G's default WALG_INTEGRITY_MAX_DELAYED_WALS=0: the newest are "uploading"
    scanned = statuses(scan_integrity((1, 40), 1, present, {}, uploading=4, delayed=0))
    assert scanned[39] == (1, UPLOADING) and scanned[38] == (1, UPLOADING)
    assert scanned[35] == (1, LOST)


def test_scan_follows_the_timeline_history() -> None:
    """At the segment holding the switch point the scan steps onto the parent timeline."""
    present = {(1, n) for n in range(1, 6)} | {(2, n) for n in range(5, 9)}
    scanned = statuses(scan_integrity((2, 9), 1, present, {5: 1}, uploading=1, delayed=0))
    assert scanned[8] == (2, FOUND) and scanned[5] == (2, FOUND)
    assert scanned[4] == (1, FOUND) and scanned[1] == (1, FOUND)
    ranges = collapse(scan_integrity((2, 9), 1, present, {5: 1}, uploading=1, delayed=0))
    assert [(r.timeline, r.first, r.last, r.count) for r in ranges] == [(1, 1, 4, 4), (2, 5, 8, 4)]


def test_scan_skips_a_switch_not_in_our_history() -> None:
    """When the previous segment exists on the current timeline, the record is ignored."""
    present = {(2, n) for n in range(1, 9)}
    scanned = statuses(scan_integrity((2, 9), 1, present, {5: 1}, uploading=1, delayed=0))
    assert all(tli == 2 for tli, _ in scanned.values())


@given(
    st.sets(st.integers(1, 60)),
    st.integers(1, 70),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_scan_and_collapse_cover_every_segment_once(
    have: set[int], current: int, uploading: int, delayed: int
) -> None:
    """Each number in [stop, current) is scanned once; FOUND exactly when present; ranges
    are contiguous, count their segments and differ from their neighbours."""
    present = {(1, n) for n in have}
    scanned = scan_integrity((1, current), 1, present, {}, uploading=uploading, delayed=delayed)
    assert sorted(s.number for s in scanned) == list(range(1, current))
    assert all((s.status is FOUND) == ((1, s.number) in present) for s in scanned)
    ranges = collapse(scanned)
    assert sum(r.count for r in ranges) == len(scanned)
    for a, b in itertools.pairwise(ranges):
        assert a.last + 1 == b.first and a.status != b.status
    assert all(r.last - r.first + 1 == r.count for r in ranges)
    lost = any(s.status is LOST for s in scanned)
    assert (integrity_status(ranges, False) is CheckStatus.FAILURE) == lost


def test_integrity_status() -> None:
    """OK / WARNING / FAILURE as WAL-G; without backups, lost segments before the first
    found range only warn."""
    def rng(status: SegmentStatus) -> SegmentRange:
        return SegmentRange(1, 1, 1, 1, status)

    assert integrity_status([rng(FOUND)], False) is CheckStatus.OK
    assert integrity_status([], False) is CheckStatus.OK
    assert integrity_status([rng(FOUND), rng(UPLOADING)], False) is CheckStatus.WARNING
    assert integrity_status([rng(LOST), rng(FOUND)], False) is CheckStatus.FAILURE
    assert integrity_status([rng(LOST), rng(FOUND)], True) is CheckStatus.WARNING
    assert integrity_status([rng(FOUND), rng(LOST), rng(FOUND)], True) is CheckStatus.FAILURE


def test_timeline_status() -> None:
    assert timeline_status(2, 2) is CheckStatus.OK
    assert timeline_status(2, 3) is CheckStatus.FAILURE
    assert timeline_status(1, 0) is CheckStatus.WARNING


def test_backup_is_usable() -> None:
    """WAL-G's checkBackupIsCorrect: permanent backups never bound the scan; with history,
    a backup must lie on the current timeline's ancestry before its switch point."""
    ended = {1: 5}  # timeline 1 ended in segment 5, timeline 2 is current
    assert backup_is_usable((1, 3), 2, ended)
    assert not backup_is_usable((1, 6), 2, ended)  # after the switch: another history
    assert backup_is_usable((2, 6), 2, ended)
    assert not backup_is_usable((2, 4), 2, ended)  # before timeline 2 began
    assert not backup_is_usable((3, 9), 2, ended)  # a timeline not in our history
    assert not backup_is_usable((1, 3), 2, ended, permanent=True)
    assert backup_is_usable((1, 3), 2, ended, permanent=True, allow_permanent=True)
    assert backup_is_usable((5, 3), 2, {})  # no history: anything goes


# -- wal-show pure parts --------------------------------------------------------------------


@given(st.sets(st.integers(0, 200), min_size=1))
def test_missing_segments_are_the_gaps(numbers: set[int]) -> None:
    """Exactly the numbers between the lowest and highest that are absent, newest first."""
    gaps = missing_segments(numbers)
    expected = [n for n in range(min(numbers), max(numbers) + 1) if n not in numbers]
    assert list(gaps) == sorted(expected, reverse=True)


def test_timeline_infos() -> None:
    """Per timeline: range, count, gaps, parent and switch point from its history."""
    segments = {(1, 1), (1, 2), (1, 4), (2, 4), (2, 5)}
    infos = timeline_infos(segments, {2: [HistoryRecord(1, 4 * SEG + 0xA0)]})
    one, two = infos
    assert (one.id, one.parent_id, one.switch_point_lsn) == (1, 0, 0)
    assert (one.first, one.last, one.count, one.missing) == (1, 4, 3, (3,))
    assert one.status == "LOST_SEGMENTS"
    assert (two.parent_id, two.switch_point_lsn, two.status) == (1, 0x40000A0, "OK")
    assert two.range_size == 2


# -- output ---------------------------------------------------------------------------------


def test_verify_text_is_wal_gs() -> None:
    """The plain output of WAL-G's documentation, byte for byte."""
    ranges = [
        SegmentRange(3, 3 * 256 + 0x4D, 4 * 256 + 0xF0, 420, FOUND),
        SegmentRange(4, 4 * 256 + 0xF1, 8 * 256 + 0x34, 836, FOUND),
    ]
    results = {
        "timeline": CheckResult(CheckStatus.OK, timelines=TimelineDetails(4, 4)),
        "integrity": CheckResult(CheckStatus.OK, ranges=ranges),
    }
    assert wal_report.verify_text(results) == """\
[wal-verify] integrity check status: OK
[wal-verify] integrity check details:
+-----+--------------------------+--------------------------+----------------+--------+
| TLI | START                    | END                      | SEGMENTS COUNT | STATUS |
+-----+--------------------------+--------------------------+----------------+--------+
|   3 | 00000003000000030000004D | 0000000300000004000000F0 |            420 |  FOUND |
|   4 | 0000000400000004000000F1 | 000000040000000800000034 |            836 |  FOUND |
+-----+--------------------------+--------------------------+----------------+--------+
[wal-verify] timeline check status: OK
[wal-verify] timeline check details:
Highest timeline found in storage: 4
Current cluster timeline: 4
"""


def test_verify_json_is_wal_gs() -> None:
    """The shape of WAL-G's cmd/pg/exporter/testdata/wal-verify.json."""
    ranges = [
        SegmentRange(67, 0x306 * 256 + 0x60, 0x306 * 256 + 0x60, 1, LOST),
        SegmentRange(67, 0x306 * 256 + 0x61, 0x388 * 256 + 0xC2, 33379, FOUND),
        SegmentRange(68, 0x388 * 256 + 0xC3, 0x388 * 256 + 0xE9, 39, FOUND),
    ]
    text = wal_report.verify_json({
        "integrity": CheckResult(CheckStatus.FAILURE, ranges=ranges),
        "timeline": CheckResult(CheckStatus.OK, timelines=TimelineDetails(68, 68)),
    })
    assert json.loads(text) == {
        "integrity": {"status": "FAILURE", "details": [
            {"timeline_id": 67, "start_segment": "000000430000030600000060",
             "end_segment": "000000430000030600000060", "segments_count": 1,
             "status": "MISSING_LOST"},
            {"timeline_id": 67, "start_segment": "000000430000030600000061",
             "end_segment": "0000004300000388000000C2", "segments_count": 33379,
             "status": "FOUND"},
            {"timeline_id": 68, "start_segment": "0000004400000388000000C3",
             "end_segment": "0000004400000388000000E9", "segments_count": 39,
             "status": "FOUND"},
        ]},
        "timeline": {"status": "OK", "details": {
            "current_timeline_id": 68, "highest_storage_timeline_id": 68}},
    }
    assert text.startswith('{"integrity":{"status":"FAILURE","details":[{"timeline_id":67,')


# -- flows on storage -----------------------------------------------------------------------


def test_run_checks_healthy_gapped_and_named() -> None:
    """The scan starts at the earliest non-permanent backup; a gap there is MISSING_LOST."""
    storage = MemoryStorage()
    put_backup(storage, 3, at(0), permanent=True)
    first = put_backup(storage, 5, at(1))
    put_backup(storage, 8, at(2))
    put_wal(storage, 1, range(3, 20))
    position = Position(1, 20 * SEG + 0x100, SEG)  # current segment 20

    def run(**kw: object) -> dict[str, CheckResult]:
        return run_checks(storage, ["integrity", "timeline", "integrity"], position,
                          {}.get, uploading=2, delayed=0, **kw)  # type: ignore[arg-type]

    results = run()
    assert list(results) == ["integrity", "timeline"]
    (only,) = results["integrity"].ranges
    assert (only.first, only.last, only.status) == (5, 19, FOUND)
    assert results["timeline"].status is CheckStatus.OK
    storage.delete_objects(["wal_005/00000001000000000000000A.lz4"])
    results = run()
    assert results["integrity"].status is CheckStatus.FAILURE
    assert [r.status for r in results["integrity"].ranges] == [FOUND, LOST, FOUND]
    assert run(backup_name=first)["integrity"].status is CheckStatus.FAILURE
    with pytest.raises(BackupNotFound):
        run(backup_name="base_000000050000000000000001")


def test_run_checks_without_backups_warns() -> None:
    """No backup: the scan goes down to segment 1 and early gaps only warn."""
    storage = MemoryStorage()
    put_wal(storage, 1, range(6, 10))
    results = run_checks(storage, ["integrity"], Position(1, 10 * SEG + 1, SEG), {}.get,
                         uploading=1, delayed=0)
    assert results["integrity"].status is CheckStatus.WARNING
    assert results["integrity"].ranges[0] == SegmentRange(1, 1, 5, 5, LOST)


def test_malformed_history_is_an_error() -> None:
    storage = MemoryStorage()
    with pytest.raises(IntegrityError, match=r"00000002\.history"):
        run_checks(storage, ["integrity"], Position(2, 10 * SEG, SEG), {2: "garbage"}.get,
                   uploading=1, delayed=0)


def test_show_lists_timelines_with_parents_and_backups() -> None:
    """Two timelines; the backup of each listed on its own; JSON keys as WAL-G's."""
    storage = MemoryStorage()
    put_wal(storage, 1, [2, 3, 5, 6])
    put_wal(storage, 2, range(6, 9))
    b1 = put_backup(storage, 2, at(0), finish_seg=3)
    b2 = put_backup(storage, 7, at(1), timeline=2)
    history = {2: "1\t0/60000A0\tno recovery target specified\n"}
    infos, backups = show(storage, history.get, with_backups=True, segment_size=SEG)
    assert backups is not None
    assert [b.name for b in backups[1]] == [b1] and [b.name for b in backups[2]] == [b2]
    docs = json.loads(wal_report.show_json(infos, backups))
    assert list(docs[0]) == [
        "id", "parent_id", "switch_point_lsn", "start_segment", "end_segment",
        "segments_count", "missing_segments", "backups", "segment_range_size", "status"]
    assert docs[0]["missing_segments"] == ["000000010000000000000004"]
    assert docs[0]["status"] == "LOST_SEGMENTS"
    assert (docs[1]["parent_id"], docs[1]["switch_point_lsn"]) == (1, 0x60000A0)
    assert docs[1]["backups"][0]["backup_name"] == b2
    text = wal_report.show_text(infos, backups)
    assert "| TLI | PARENT TLI | SWITCHPOINT LSN |" in text
    assert "|   2 |          1 |       0/60000A0 |" in text
    infos, none = show(storage, history.get, with_backups=False, segment_size=SEG)
    assert none is None and "backups" not in json.loads(wal_report.show_json(infos, None))[0]
