"""Pure PostgreSQL knowledge: LSNs, WAL names, backup labels, pg_control and pages."""

from __future__ import annotations

import random
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walg.errors import PostgresError
from walg.postgres import connection, control, label, pages, wal

SEGMENT_SIZES = st.sampled_from([1 << n for n in range(20, 31)])
LSNS = st.integers(min_value=0, max_value=wal.MAX_LSN)
TIMELINES = st.integers(min_value=1, max_value=wal.MAX_TIMELINE)


# --- LSN --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/1000028", 0x1000028),
        ("16/B374D848", 0x16_B374D848),
        ("16/b374d848", 0x16_B374D848),
        ("FFFFFFFF/FFFFFFFF", wal.MAX_LSN),
        ("00000001/00000000", 1 << 32),
    ],
)
def test_parse_lsn_table(text: str, value: int) -> None:
    """parse_lsn reads PostgreSQL's X/X form, any case, with or without zero padding."""
    assert wal.parse_lsn(text) == value


@pytest.mark.parametrize("text", ["", "0", "0/", "/0", "1/2/3", "G/0", "123456789/0", "0x1/0"])
def test_parse_lsn_rejects_malformed(text: str) -> None:
    """Malformed LSNs raise ValueError naming the value."""
    with pytest.raises(ValueError, match="invalid LSN"):
        wal.parse_lsn(text)


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0/0"), (0x16_B374D848, "16/B374D848"), (0x1000028, "0/1000028")]
)
def test_format_lsn_table(value: int, text: str) -> None:
    """format_lsn writes %X/%X like PostgreSQL: upper case, no padding."""
    assert wal.format_lsn(value) == text


@given(LSNS)
def test_lsn_round_trip(lsn: int) -> None:
    """format then parse gives the LSN back."""
    assert wal.parse_lsn(wal.format_lsn(lsn)) == lsn


def test_format_lsn_rejects_out_of_range() -> None:
    """LSNs are unsigned 64-bit numbers."""
    with pytest.raises(ValueError):
        wal.format_lsn(-1)
    with pytest.raises(ValueError):
        wal.format_lsn(1 << 64)


# --- WAL names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeline", "lsn", "size", "name"),
    [
        (1, 0x1000028, wal.DEFAULT_SEGMENT_SIZE, "000000010000000000000001"),
        (1, 0x16_B374D848, wal.DEFAULT_SEGMENT_SIZE, "0000000100000016000000B3"),
        (2, 0x2_FFFFFFFF, wal.DEFAULT_SEGMENT_SIZE, "0000000200000002000000FF"),
        (0xA, 0x3000000, wal.DEFAULT_SEGMENT_SIZE, "0000000A0000000000000003"),
        (1, 0x16_B374D848, 1 << 20, "000000010000001600000B37"),
        (1, 0x16_B374D848, 1 << 30, "000000010000001600000002"),
        (1, 0x16_B374D848, 64 << 20, "00000001000000160000002C"),
    ],
)
def test_wal_file_name_table(timeline: int, lsn: int, size: int, name: str) -> None:
    """wal_file_name matches PostgreSQL's XLogFileName(XLByteToSeg(lsn)) for several sizes."""
    assert wal.wal_file_name(timeline, lsn, size) == name
    assert wal.timeline_from_name(name) == timeline
    assert wal.segment_number_from_name(name, size) == lsn // size


@given(TIMELINES, LSNS, SEGMENT_SIZES)
def test_segment_name_round_trip(timeline: int, lsn: int, size: int) -> None:
    """The name of an LSN's segment parses back to the timeline and segment number."""
    name = wal.wal_file_name(timeline, lsn, size)
    assert len(name) == 24
    assert wal.is_segment_name(name)
    assert wal.parse_segment_name(name, size) == (timeline, wal.segment_number(lsn, size))
    start = wal.segment_start_lsn(wal.segment_number(lsn, size), size)
    assert start <= lsn < start + size
    assert wal.segment_offset(lsn, size) == lsn - start


@given(TIMELINES, st.integers(min_value=1, max_value=(1 << 40)), SEGMENT_SIZES)
def test_next_and_previous_are_inverse(timeline: int, segno: int, size: int) -> None:
    """next_segment_name and previous_segment_name step by one segment number, across ids."""
    segno = min(segno, (1 << 64) // size - 2)
    name = wal.segment_name(timeline, segno, size)
    after = wal.next_segment_name(name, size)
    assert wal.segment_number_from_name(after, size) == segno + 1
    assert wal.previous_segment_name(after, size) == name


def test_next_segment_crosses_the_middle_part() -> None:
    """After ...000000FF (16 MiB segments) comes the next 'xlogid'."""
    assert wal.next_segment_name("0000000100000000000000FF") == "000000010000000100000000"
    assert wal.previous_segment_name("000000010000000100000000") == "0000000100000000000000FF"


def test_previous_of_first_segment_fails() -> None:
    """Segment 0 has no predecessor."""
    with pytest.raises(ValueError, match="first"):
        wal.previous_segment_name("000000010000000000000000")


@pytest.mark.parametrize(
    "name",
    [
        "00000001000000000000001",  # 23 characters
        "0000000100000000000000010",  # 25
        "00000001000000000000000g",  # not hex
        "00000001000000000000000a",  # lower case: PostgreSQL writes upper case only
        "000000010000000000000100",  # last part too big for 16 MiB segments
    ],
)
def test_parse_segment_name_rejects(name: str) -> None:
    """Bad segment names raise ValueError."""
    with pytest.raises(ValueError, match="invalid WAL segment name"):
        wal.parse_segment_name(name)


@pytest.mark.parametrize(
    ("name", "kind", "timeline"),
    [
        ("000000010000000000000002", wal.WalFileKind.SEGMENT, 1),
        ("00000002.history", wal.WalFileKind.HISTORY, 2),
        ("000000010000000000000002.00000028.backup", wal.WalFileKind.BACKUP, 1),
        ("0000000A0000000000000002.partial", wal.WalFileKind.PARTIAL, 10),
        ("00000002.history.lz4", None, None),
        ("000000010000000000000002.lz4", None, None),
        ("archive_status", None, None),
        ("0000000200000000.history", None, None),
        ("000000010000000000000002.28.backup", None, None),
    ],
)
def test_wal_file_kinds(name: str, kind: wal.WalFileKind | None, timeline: int | None) -> None:
    """Each kind of pg_wal file name is recognised, and its timeline read; others are not."""
    assert wal.wal_file_kind(name) == kind
    assert wal.is_segment_name(name) == (kind == wal.WalFileKind.SEGMENT)
    assert wal.is_history_name(name) == (kind == wal.WalFileKind.HISTORY)
    assert wal.is_backup_history_name(name) == (kind == wal.WalFileKind.BACKUP)
    assert wal.is_partial_name(name) == (kind == wal.WalFileKind.PARTIAL)
    if timeline is None:
        with pytest.raises(ValueError):
            wal.timeline_from_name(name)
    else:
        assert wal.timeline_from_name(name) == timeline


def test_history_and_backup_file_names() -> None:
    """history_file_name and backup_history_file_name follow TLHistoryFileName and
    BackupHistoryFileName."""
    assert wal.history_file_name(2) == "00000002.history"
    assert wal.history_file_name(0x1F) == "0000001F.history"
    name = wal.backup_history_file_name(1, 0x2000028)
    assert name == "000000010000000000000002.00000028.backup"


@pytest.mark.parametrize("size", [0, 1 << 19, 3 << 20, 1 << 31, (16 << 20) + 1])
def test_bad_segment_sizes(size: int) -> None:
    """Segment sizes must be powers of two from 1 MiB to 1 GiB."""
    with pytest.raises(ValueError, match="segment size"):
        wal.check_segment_size(size)


# --- backup label -----------------------------------------------------------------------------

LABEL_15 = """START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2024-01-01 12:00:00 UTC
LABEL: base: with a colon
START TIMELINE: 1
"""


def test_parse_backup_label() -> None:
    """The label's LSNs, file, method, label (which may contain ': ') and timeline are read."""
    parsed = label.parse_backup_label(LABEL_15)
    assert parsed.start_lsn == 0x2000028
    assert parsed.start_wal_file == "000000010000000000000002"
    assert parsed.checkpoint_lsn == 0x2000060
    assert parsed.backup_method == "streamed"
    assert parsed.backup_from == "primary"
    assert parsed.label == "base: with a colon"
    assert parsed.start_timeline == 1


def test_parse_backup_label_without_timeline_and_broken() -> None:
    """Old labels have no START TIMELINE; labels without start/checkpoint lines are refused."""
    old = "\n".join(LABEL_15.splitlines()[:-1])
    assert label.parse_backup_label(old).start_timeline is None
    with pytest.raises(ValueError, match="invalid backup label"):
        label.parse_backup_label("LABEL: x\n")


# --- pg_control -------------------------------------------------------------------------------


def test_crc32c_known_vectors() -> None:
    """crc32c is CRC-32C (Castagnoli): the check value of '123456789' and a continuation."""
    assert control.crc32c(b"123456789") == 0xE3069283
    assert control.crc32c(b"") == 0
    assert control.crc32c(b"6789", control.crc32c(b"12345")) == 0xE3069283


def build_control(**changes: object) -> bytes:
    """A pg_control image (version 1300 layout) with sensible values and a valid CRC."""
    values: dict[str, object] = {
        "system_identifier": 7311111111111111111,
        "pg_control_version": 1300,
        "catalog_version": 202209061,
        "state": 6,
        "checkpoint_lsn": 0x3000060,
        "redo_lsn": 0x3000028,
        "timeline": 3,
        "prev_timeline": 2,
        "full_page_writes": True,
        "wal_level": 1,
        "max_align": 8,
        "float_format": 1234567.0,
        "block_size": 8192,
        "relseg_size": 131072,
        "wal_block_size": 8192,
        "wal_segment_size": 16 << 20,
        "data_checksum_version": 1,
    }
    values.update(changes)
    data = bytearray(control.CONTROL_FILE_SIZE)
    for name, code, offset in control._FIELDS:
        if name in values:
            struct.pack_into("<" + code, data, offset, values[name])
    struct.pack_into("<I", data, 288, control.crc32c(data[:288]))
    return bytes(data)


def test_parse_control_reads_fields_and_checks_crc() -> None:
    """The fields land where PostgreSQL 13-16 put them, and the CRC is verified."""
    parsed = control.parse_control(build_control())
    assert parsed.system_identifier == 7311111111111111111
    assert parsed.checkpoint_lsn == 0x3000060
    assert parsed.redo_lsn == 0x3000028
    assert parsed.timeline == 3
    assert parsed.prev_timeline == 2
    assert parsed.wal_segment_size == 16 << 20
    assert parsed.block_size == 8192
    assert parsed.data_checksums
    assert parsed.db_state is control.DbState.IN_PRODUCTION


def test_parse_control_rejects_corruption_and_other_versions() -> None:
    """A flipped byte fails the CRC; other layouts and short files fail clearly."""
    data = bytearray(build_control())
    data[40] ^= 1
    with pytest.raises(PostgresError, match="CRC mismatch"):
        control.parse_control(bytes(data))
    assert control.parse_control(bytes(data), verify_crc=False).redo_lsn == 0x3000029
    with pytest.raises(PostgresError, match="unsupported pg_control version 1700"):
        control.parse_control(build_control(pg_control_version=1700))
    assert control.parse_control_header(build_control(pg_control_version=1700)).catalog_version
    with pytest.raises(PostgresError, match="too short"):
        control.parse_control(build_control()[:100])
    with pytest.raises(PostgresError, match="byte order"):
        control.parse_control(build_control(float_format=1.0))


def test_read_control_missing_file(tmp_path: object) -> None:
    """A directory without global/pg_control gives a PostgresError that mentions PGDATA."""
    with pytest.raises(PostgresError) as caught:
        control.read_control(str(tmp_path))
    assert "PGDATA" in caught.value.hint


# --- pages ------------------------------------------------------------------------------------


def build_page(
    lsn: int = 0x1_00000028,
    *,
    flags: int = 0,
    lower: int = 40,
    upper: int = 8000,
    special: int = 8192,
    version: int = 8192 + 4,
    fill: int = 0x5A,
) -> bytes:
    """A heap-like page: header fields as given, line pointers zero, tuple space filled."""
    page = bytearray(pages.BLOCK_SIZE)
    struct.pack_into(
        "<IIHHHHHHI", page, 0, lsn >> 32, lsn & 0xFFFFFFFF, 0, flags, lower, upper, special,
        version, 0,
    )  # fmt: skip
    page[upper:special] = bytes([fill]) * (special - upper)
    return bytes(page)


def test_parse_page_header() -> None:
    """pd_lsn is xlogid (high) then xrecoff (low); the other fields follow in order."""
    header = pages.parse_page_header(build_page(0x16_B374D848, flags=1, lower=28, upper=100))
    assert header.lsn == 0x16_B374D848
    assert pages.page_lsn(build_page(0x16_B374D848)) == 0x16_B374D848
    assert (header.flags, header.lower, header.upper, header.special) == (1, 28, 100, 8192)
    assert header.page_size == 8192
    assert header.layout_version == 4


@pytest.mark.parametrize(
    ("changes", "valid"),
    [
        ({}, True),
        ({"flags": 7}, True),
        ({"flags": 8}, False),
        ({"lower": 23}, False),
        ({"lower": 8001}, False),
        ({"upper": 8192, "special": 8000}, False),
        ({"special": 8200}, False),
        ({"lsn": 0}, False),
        ({"version": 8192 + 3}, False),
        ({"version": 4096 + 4}, False),
    ],
)
def test_is_valid_header(changes: dict[str, int], valid: bool) -> None:
    """WAL-G's header rule: known flags, 24 <= lower <= upper <= special <= 8192, lsn != 0,
    pagesize_version 8196."""
    page = build_page(**changes)  # type: ignore[arg-type]
    assert pages.is_valid_header(pages.parse_page_header(page)) is valid


def test_classify_page() -> None:
    """Delta backups send changed and new pages, skip older ones, and flag invalid ones."""
    since = 0x2_00000000
    assert pages.classify_page(build_page(since), since) is pages.PageKind.CHANGED
    assert pages.classify_page(build_page(since + 1), since) is pages.PageKind.CHANGED
    assert pages.classify_page(build_page(since - 1), since) is pages.PageKind.UNCHANGED
    assert pages.classify_page(bytes(pages.BLOCK_SIZE), since) is pages.PageKind.NEW
    assert pages.is_new_page(bytes(pages.BLOCK_SIZE))
    assert pages.is_zero_page(bytes(pages.BLOCK_SIZE))
    garbage = build_page(flags=0x100)
    assert pages.classify_page(garbage, since) is pages.PageKind.INVALID
    assert not pages.is_zero_page(garbage)


def reference_checksum(page: bytes, blkno: int) -> int:
    """pg_checksum_page transcribed literally from checksum_impl.h (slow, obviously right)."""
    data = bytearray(page)
    data[8:10] = b"\0\0"
    words = struct.unpack("<2048I", data)
    sums = list(pages._BASE_OFFSETS)
    rows = [words[i * 32 : (i + 1) * 32] for i in range(64)] + [(0,) * 32] * 2
    for row in rows:
        for j in range(32):
            tmp = sums[j] ^ row[j]
            sums[j] = ((tmp * 16777619) & 0xFFFFFFFF) ^ (tmp >> 17)
    result = 0
    for value in sums:
        result ^= value
    return ((result ^ blkno) % 65535) + 1


def test_page_checksum_known_page() -> None:
    """A fixed page has the checksum the literal C transcription gives (and pd_checksum is
    ignored)."""
    page = bytearray(build_page(fill=0x11))
    for i in range(100, 8000, 7):
        page[i] = i & 0xFF
    assert pages.page_checksum(bytes(page), 0) == reference_checksum(bytes(page), 0) == 0x1BD0
    struct.pack_into("<H", page, 8, 0xBEEF)
    assert pages.page_checksum(bytes(page), 0) == 0x1BD0
    assert pages.page_checksum(bytes(page), 7) == reference_checksum(bytes(page), 7)
    struct.pack_into("<H", page, 8, 0x1BD0)
    assert pages.verify_page(bytes(page), 0)
    assert not pages.verify_page(bytes(page), 1)


@given(
    st.integers(min_value=0, max_value=2**64),
    st.sampled_from([0x00, 0xFF, None]),
    st.integers(min_value=0, max_value=2**32 - 4),
)
def test_batched_checksums_match_reference(seed: int, fill: int | None, blkno: int) -> None:
    """The lane-parallel checksum of several pages equals the literal one, page by page
    (random pages, and pages of all-zero / all-one words that stress the wrap-around)."""
    size = pages.BLOCK_SIZE * 3
    data = random.Random(seed).randbytes(size) if fill is None else bytes([fill]) * size
    expected = [
        reference_checksum(data[i * pages.BLOCK_SIZE : (i + 1) * pages.BLOCK_SIZE], blkno + i)
        for i in range(3)
    ]
    assert pages.page_checksums(data, blkno) == expected


def test_verify_new_pages_and_sizes() -> None:
    """New pages pass only when all zero; partial pages are refused."""
    assert pages.verify_page(bytes(pages.BLOCK_SIZE), 5)
    dirty_new = bytearray(pages.BLOCK_SIZE)
    dirty_new[100] = 1
    assert not pages.verify_page(bytes(dirty_new), 5)
    with pytest.raises(ValueError):
        pages.page_checksums(bytes(100), 0)
    assert pages.block_number(2, 5) == 2 * 131072 + 5


# --- connection helpers that need no server ---------------------------------------------------


def test_importing_walg_postgres_does_not_load_psycopg2() -> None:
    """walg.postgres.* can be imported by wal-push/wal-fetch without paying for psycopg2."""
    code = (
        "import sys, walg.postgres.connection, walg.postgres.control, walg.postgres.pages;"
        "print('psycopg2' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def make_stop(start_timeline: int, stop_timeline: int) -> connection.BackupStop:
    text = LABEL_15.replace("START TIMELINE: 1", f"START TIMELINE: {start_timeline}")
    return connection.BackupStop(0x3000000, text, "", stop_timeline)


def test_stop_refuses_a_timeline_change() -> None:
    """A backup whose timeline changed between start and stop is refused with a clear error."""
    started = connection.BackupStart(0x2000028, 1, True, wal.DEFAULT_SEGMENT_SIZE, 150000)
    connection.PgConnection._check_timeline(started, make_stop(1, 1))
    with pytest.raises(PostgresError, match=r"timeline changed during the backup \(from 1 to 2\)"):
        connection.PgConnection._check_timeline(started, make_stop(1, 2))
    with pytest.raises(PostgresError, match="timeline changed"):
        connection.PgConnection._check_timeline(started, make_stop(2, 2))
    assert started.wal_file_name == "000000010000000000000002"

