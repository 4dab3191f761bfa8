"""Whether a WAL file's content fits its name: tables of hand-built page headers, history
and backup history files (walg.postgres.wal_format, pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from walg.postgres.wal import segment_name
from walg.postgres.wal_format import (
    LONG_HEADER_SIZE,
    MAX_TEXT_SIZE,
    PAGE_MAGIC,
    LongPageHeader,
    check_wal_file,
    head_size,
)

MIB = 1 << 20
SIZES = [1 << n for n in range(20, 31)]  # every segment size PostgreSQL allows


def header(timeline: int, segno: int, seg_size: int = 16 * MIB, **fields: int) -> LongPageHeader:
    """The first page header PostgreSQL 15 writes for segment ``segno`` on ``timeline``."""
    base = LongPageHeader(0xD110, 0x0002, timeline, segno * seg_size, 0, 7, seg_size, 8192)
    return replace(base, **fields)


def check(name: str, hdr: LongPageHeader, size: int | None = None) -> int | None:
    """check_wal_file on a file of ``size`` bytes (default: the declared segment size)."""
    return check_wal_file(name, hdr.seg_size if size is None else size, hdr.pack() + bytes(24))


@pytest.mark.parametrize("seg_size", SIZES)
def test_every_segment_size_passes(seg_size: int) -> None:
    """A segment of any allowed size (initdb --wal-segsize) passes; the check returns it."""
    segno = 0x1_0000_0000 // seg_size + 3  # past the first "log" part of the name
    name = segment_name(1, segno, seg_size)
    assert check(name, header(1, segno, seg_size)) == seg_size


@pytest.mark.parametrize("version", list(PAGE_MAGIC))
def test_every_known_magic_passes(version: str) -> None:
    """Segments of PostgreSQL 9.6 to 17 pass, and so do a newer version's (higher magic)."""
    name = segment_name(1, 5)
    assert check(name, header(1, 5, magic=PAGE_MAGIC[version])) == 16 * MIB
    assert check(name, header(1, 5, magic=max(PAGE_MAGIC.values()) + 2)) == 16 * MIB


@pytest.mark.parametrize(
    ("name", "hdr"),
    [
        (segment_name(2, 5), header(1, 5)),  # first segment of timeline 2, copied from 1
        (segment_name(4, 5), header(2, 5)),  # two promotions within one segment
        (segment_name(1, 5) + ".partial", header(1, 5)),
        (segment_name(1, 5), header(1, 5, info=0x0002 | 0x0001 | 0x0004)),  # other flags
        (segment_name(1, 5), header(1, 5, blcksz=32768)),  # --with-wal-blocksize
        (segment_name(1, 5), header(1, 5, magic=0xD118, info=0x0012)),  # a future flag
        (segment_name(1, 5), header(1, 5, magic=0xD1FF, info=0x8003)),
        (segment_name(1, 5), header(1, 5, magic=0xD111)),  # between 15 and 16: a beta, a fork
        (segment_name(1, 5), header(1, 5, magic=0xD0A0, info=0x0022)),  # between 9.6 and 10
    ],
    ids=["old timeline", "older timeline", "partial", "flags", "block size",
         "future version's flag", "highest magic, new flags", "magic between known ones",
         "unknown flag with an unknown magic"],
)
def test_legitimate_segments_pass(name: str, hdr: LongPageHeader) -> None:
    """Segments PostgreSQL really writes pass, first pages of a new timeline included."""
    assert check(name, hdr) == 16 * MIB


NAME = segment_name(3, 0x205)  # 000000030000000200000005 with 16 MiB segments
BAD_SEGMENTS = {
    "empty": (header(3, 0x205), 0, "it is empty"),
    "header cut": (header(3, 0x205), 30, "too short for a WAL page header"),
    "smaller": (header(3, 0x205), MIB, "it is 1048576 bytes, but its header says segments"),
    "larger": (header(3, 0x205), 32 * MIB, "it is 33554432 bytes"),
    "magic": (header(3, 0x205, magic=0x1234), None, "magic 0x1234"),
    "magic of 9.5": (header(3, 0x205, magic=0xD087), None, "magic 0xD087"),
    "magic above the ceiling": (header(3, 0x205, magic=0xD200), None, "magic 0xD200"),
    "short header": (header(3, 0x205, info=0x0000), None, "not a segment's first"),
    "unknown flag": (header(3, 0x205, info=0x0012), None, "xlp_info 0x0012"),
    "unknown flag of 17": (header(3, 0x205, magic=0xD116, info=0x0102), None, "xlp_info 0x0102"),
    "future, short header": (header(3, 0x205, magic=0xD120, info=0x0010), None, "xlp_info 0x0010"),
    "future, address": (header(3, 0x206, magic=0xD120, info=0x0012), None, "first page is at"),
    "future, size": (header(3, 0x205, magic=0xD120), MIB, "header says segments"),
    "segment size": (header(3, 0x205, seg_size=3 * MIB), 3 * MIB, "impossible segment size"),
    "block size": (header(3, 0x205, blcksz=1000), None, "impossible WAL block size"),
    "address": (header(3, 0x206), None, "first page is at 2/6000000, but segment"),
    "address of other size": (header(3, 0x205, seg_size=32 * MIB), None, "first page is at"),
    "later timeline": (header(4, 0x205), None, "on timeline 4, not on timeline 3"),
    "timeline 0": (header(0, 0x205), None, "on timeline 0"),
}


@pytest.mark.parametrize("case", list(BAD_SEGMENTS))
def test_bad_segments_are_refused(case: str) -> None:
    """A segment whose size or first page header does not fit its name is refused, and
    the message says what is wrong."""
    hdr, size, problem = BAD_SEGMENTS[case]
    with pytest.raises(ValueError, match=problem):
        check(NAME, hdr, size)


def test_segment_name_impossible_for_the_declared_size() -> None:
    """A name whose last part is too large for the declared segment size is refused."""
    name = "0000000100000000000000FF"  # segment 255: fine for 16 MiB, not for 1 GiB segments
    with pytest.raises(ValueError, match="last part must be below"):
        check(name, header(1, 0, seg_size=1 << 30))


HISTORY = b"1\t0/3000000\tno recovery target specified\n\n# comment\n2\t0/5000A28\tbefore x\n"


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("00000003.history", HISTORY, None),
        ("00000003.history", b"1\t0/3000000\tat restore point \xe9t\xe9\n", None),  # latin-1
        ("00000001.history", b"", "timeline 1 has no history file"),
        ("00000003.history", b"", "names no parent timeline"),
        ("00000003.history", b"# only a comment\n", "names no parent timeline"),
        ("00000003.history", b"x\t0/1\tr\n", "malformed"),
        ("00000003.history", b"1\tzz\tr\n", "invalid LSN"),
        ("00000003.history", b"2\t0/1\tr\n1\t0/1\tr\n", "must increase"),
        ("00000003.history", b"1\t0/1\tr\n3\t0/2\tr\n", "below 3; 3 follows 1"),
        ("00000003.history", b"1\t0/1\tr\n" * 2, "1 follows 1"),
    ],
)
def test_history_files(name: str, text: bytes, problem: str | None) -> None:
    """Timeline history files must parse as readTimeLineHistory does, parents increasing
    and below the file's timeline."""
    if problem is None:
        assert check_wal_file(name, len(text), text) is None
    else:
        with pytest.raises(ValueError, match=problem):
            check_wal_file(name, len(text), text)


def test_text_files_must_be_whole_and_small() -> None:
    """A history file larger than MAX_TEXT_SIZE, or given only in part, is refused."""
    with pytest.raises(ValueError, match="too large"):
        check_wal_file("00000002.history", MAX_TEXT_SIZE + 1, HISTORY)
    with pytest.raises(ValueError, match="were read"):
        check_wal_file("00000003.history", len(HISTORY) + 10, HISTORY)


BACKUP = (
    b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
    b"STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n"
    b"CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("000000010000000000000002.00000028.backup", BACKUP, None),
        ("000000010000000000000002.00000028.backup", BACKUP.replace(b"0/2000028", b"1/2000028"),
         "which its name does not name"),  # another segment, same file named
        ("000000010000000000000003.00000028.backup", BACKUP, "which its name does not name"),
        ("000000010000000000000002.00000030.backup", BACKUP, "which its name does not name"),
        ("000000010000000000000002.00000028.backup", b"LABEL: x\n", "START WAL LOCATION"),
        ("000000010000000000000002.00000028.backup", b"", "START WAL LOCATION"),
    ],
)  # fmt: skip
def test_backup_history_files(name: str, text: bytes, problem: str | None) -> None:
    """A backup history file must start with the START WAL LOCATION its name encodes."""
    if problem is None:
        assert check_wal_file(name, len(text), text) is None
    else:
        with pytest.raises(ValueError, match=problem):
            check_wal_file(name, len(text), text)


def test_backup_history_of_a_1_gib_segment_cluster() -> None:
    """The offset in a backup history name is checked whatever the segment size."""
    text = b"START WAL LOCATION: 1/40000028 (file 000000010000000100000001)\n"
    assert check_wal_file("000000010000000100000001.00000028.backup", len(text), text) is None


def test_head_size_and_other_names() -> None:
    """Segments need their header, text files their content, other names nothing (and
    pass unchecked)."""
    assert head_size(segment_name(1, 1)) == LONG_HEADER_SIZE
    assert head_size(segment_name(1, 1) + ".partial") == LONG_HEADER_SIZE
    assert head_size("00000002.history") == MAX_TEXT_SIZE
    assert head_size("notes.txt") == 0
    assert check_wal_file("notes.txt", 5, b"hello") is None
