"""The rules of walg.backup.archive_check (pure) and the stop-segment look-up in storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from walg.backup.archive_check import (
    STANDBY_TIMEOUT,
    Plan,
    effective_timeout,
    find_segment,
    missing_error,
    plan,
    stop_segment,
    timeout_error,
    unchecked_warning,
    unreadable_warning,
    wait_for_segment,
)
from walg.config.registry import VARIABLES
from walg.format.layout import WalKey, wal_keys
from walg.postgres.archiver import ArchiverStatus
from walg.postgres.connection import statement_timeout_ms
from walg.postgres.label import parse_stop_lsn
from walg.storage.memory import MemoryStorage

SEG = 16 << 20
T1 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
T2 = datetime(2024, 1, 1, 12, 5, 0, tzinfo=UTC)
SEGMENT = "000000010000000000000003"


def status(failed: datetime | None, archived: datetime | None) -> ArchiverStatus:
    return ArchiverStatus(
        archived_count=0 if archived is None else 7,
        last_archived_wal=None if archived is None else "000000010000000000000001",
        last_archived_time=archived,
        failed_count=0 if failed is None else 4,
        last_failed_wal=None if failed is None else "000000010000000000000002",
        last_failed_time=failed,
    )


@pytest.mark.parametrize(
    ("in_recovery", "check", "expected"),
    [(False, True, Plan.LOOK), (True, True, Plan.WAIT), (False, False, Plan.TRUST),
     (True, False, Plan.TRUST)],
)
def test_plan(in_recovery: bool, check: bool, expected: Plan) -> None:
    """A primary looks once, a standby waits, WALG_ARCHIVE_CHECK=false trusts."""
    assert plan(in_recovery, check) is expected


@pytest.mark.parametrize(
    ("lsn", "segment"),
    [(3 * SEG + 0x100, SEGMENT), (3 * SEG, "000000010000000000000002"),
     (3 * SEG + 1, SEGMENT), (0x1_0000_0000 + 0x28, "000000010000000100000000")],
)
def test_stop_segment_is_the_one_before_the_stop_lsn(lsn: int, segment: str) -> None:
    """XLByteToPrevSeg: a stop LSN on a segment boundary needs the previous segment."""
    assert stop_segment(1, lsn, SEG) == segment


def test_timeout_error_names_segment_and_archiver_failure() -> None:
    """The error names the stop segment, the timeout and the archiver's last failure."""
    err = timeout_error(SEGMENT, 5.0, status(failed=T2, archived=T1))
    assert f"WAL segment {SEGMENT}, the last one this backup needs" in err.msg
    assert "not archived within 5s" in err.msg
    assert "archive_command is failing: the archiver last failed on " \
        "000000010000000000000002 at 2024-01-01 12:05:00+00:00 (4 failures)" in err.msg
    assert "archive_command" in err.hint and "WALG_STOP_BACKUP_TIMEOUT" in err.hint
    assert err.exit_code != 0


@pytest.mark.parametrize(
    ("failed", "archived", "words"),
    [(None, T1, "shows no failure (last archived 000000010000000000000001"),
     (None, None, "nothing archived since the statistics were reset"),
     (T1, T2, "but it has archived since"),
     (T2, None, "archive_command is failing")],
)
def test_archiver_status_describe(
    failed: datetime | None, archived: datetime | None, words: str
) -> None:
    """pg_stat_archiver is summarised as failing, recovered or merely slow."""
    assert words in status(failed, archived).describe()


def test_missing_error_says_why_per_case() -> None:
    """Not in this storage: the message fits a standby, archive_mode=off or another archive,
    and every hint offers WALG_ARCHIVE_CHECK=false."""
    standby = missing_error(SEGMENT, True, "on", "file:///b/", 5.0)
    assert "did not reach file:///b/wal_005/ within 5s" in standby.msg
    assert "SELECT pg_switch_wal() on the primary or set archive_timeout there" in standby.hint
    assert "raise WALG_STOP_BACKUP_TIMEOUT" in standby.hint
    off = missing_error(SEGMENT, False, "off", "file:///b/", 0.0)
    assert "archive_mode is off" in off.msg and "archive_mode=on" in off.hint
    elsewhere = missing_error(SEGMENT, False, "on", "s3://bucket/x", 0.0)
    assert "archived by archive_command but is not in s3://bucket/x/wal_005/" in elsewhere.msg
    for err in (standby, off, elsewhere):
        assert SEGMENT in err.msg and "WALG_ARCHIVE_CHECK=false" in err.hint


def test_unchecked_warning_says_what_exit_0_means() -> None:
    """With the check off, the warning says where the WAL must come from."""
    assert "not archived" in unchecked_warning(SEGMENT, False, "off")
    assert "restoring needs that archive" in unchecked_warning(SEGMENT, False, "always")
    assert "the primary fills" in unchecked_warning(SEGMENT, True, "on")


def test_find_segment_under_any_extension() -> None:
    """The segment is found whatever its compression; a .backup or .partial file with the
    same stem is not taken for it."""
    storage = MemoryStorage()
    storage.put_object(f"wal_005/{SEGMENT}.00000028.backup.lz4", b"x")
    storage.put_object(f"wal_005/{SEGMENT}.partial.lz4", b"x")
    assert find_segment(storage, SEGMENT) is None
    storage.put_object(f"wal_005/{SEGMENT}.br", b"x")
    assert find_segment(storage, SEGMENT) == WalKey(f"wal_005/{SEGMENT}.br", "brotli", True)
    plain = MemoryStorage()
    plain.put_object(f"wal_005/{SEGMENT}", b"x")
    assert find_segment(plain, SEGMENT) == WalKey(f"wal_005/{SEGMENT}", "none", True)


@pytest.mark.parametrize(("ext", "method"), [("zst", "zstd"), ("gz", "gzip"), ("lzo", "lzo")])
def test_find_segment_stored_by_wal_g_with_a_method_walg_cannot_read(
    ext: str, method: str
) -> None:
    """A stop segment WAL-G's wal-push stored with zstd, gzip or lzo is archived: found,
    marked unreadable, and the warning says only WAL-G can restore it."""
    storage = MemoryStorage()
    storage.put_object(f"wal_005/{SEGMENT}.{ext}", b"x")
    found = find_segment(storage, SEGMENT)
    assert found == WalKey(f"wal_005/{SEGMENT}.{ext}", method, False)
    warning = unreadable_warning(SEGMENT, found)
    assert f"{SEGMENT}.{ext}" in warning and "walg cannot read it" in warning
    assert "WAL-G's wal-fetch" in warning
    storage.put_object(f"wal_005/{SEGMENT}.lzma", b"x")  # a copy walg reads is preferred
    assert find_segment(storage, SEGMENT) == WalKey(f"wal_005/{SEGMENT}.lzma", "lzma", True)


def test_wal_keys_list_every_extension_walg_or_wal_g_writes() -> None:
    """The one list of WAL keys: walg's methods (the preferred first), then WAL-G's zstd,
    gzip and lzo (internal/compression), marked unreadable."""
    keys = wal_keys(SEGMENT, "brotli")
    assert [(k.key.removeprefix(f"wal_005/{SEGMENT}"), k.readable) for k in keys] == [
        (".br", True), (".lz4", True), (".lzma", True), ("", True),
        (".zst", False), (".gz", False), (".lzo", False),
    ]
    with pytest.raises(ValueError):
        wal_keys("a/b", "lz4")


class FakeTime:
    """A clock that advances only when slept on; stores the segment after ``arrive_after``."""

    def __init__(self, storage: MemoryStorage, arrive_after: int | None) -> None:
        self.now, self.sleeps, self.storage, self.arrive_after = 0.0, 0, storage, arrive_after

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.sleeps == self.arrive_after:
            self.storage.put_object(f"wal_005/{SEGMENT}.lz4", b"x")


def test_wait_for_segment_returns_when_it_arrives() -> None:
    """The poll ends when the segment appears (no limit with timeout 0)."""
    storage = MemoryStorage()
    fake = FakeTime(storage, arrive_after=6)
    key = wait_for_segment(storage, SEGMENT, 0.0, clock=fake.clock, sleep=fake.sleep)
    assert key is not None and key.key == f"wal_005/{SEGMENT}.lz4" and fake.sleeps == 6


def test_wait_for_segment_gives_up_at_the_timeout() -> None:
    """A segment that never arrives: None once the timeout passed, not a moment later."""
    storage = MemoryStorage()
    fake = FakeTime(storage, arrive_after=None)
    assert wait_for_segment(storage, SEGMENT, 12.0, clock=fake.clock, sleep=fake.sleep) is None
    assert fake.now == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(0.0, 0), (5.0, 5000), (0.5, 500), (0.0001, 1), (1e-09, 1), (90.0, 90000),
     (10**9, 2**31 - 1)],
)
def test_statement_timeout_ms(seconds: float, ms: int) -> None:
    """A positive timeout never becomes 0 (no limit) and never exceeds the setting's range."""
    assert statement_timeout_ms(seconds) == ms


def test_parse_stop_lsn() -> None:
    """The STOP WAL LOCATION of a backup history file; None when absent or malformed."""
    text = ("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
            "STOP WAL LOCATION: 0/3000100 (file 000000010000000000000003)\n"
            "CHECKPOINT LOCATION: 0/2000060\n")
    assert parse_stop_lsn(text) == 0x3000100
    assert parse_stop_lsn("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n") \
        is None
    assert parse_stop_lsn("STOP WAL LOCATION: zz (file 000000010000000000000003)\n") is None


@pytest.mark.parametrize(
    ("setting", "in_recovery", "expected"),
    [(0.0, False, 0.0), (0.0, True, STANDBY_TIMEOUT), (30.0, False, 30.0), (30.0, True, 30.0),
     (3600.0, True, 3600.0)],
)
def test_effective_timeout(setting: float, in_recovery: bool, expected: float) -> None:
    """WALG_STOP_BACKUP_TIMEOUT unset waits without limit on a primary only; a standby then
    waits STANDBY_TIMEOUT; a set value applies as it is on both."""
    assert effective_timeout(setting, in_recovery) == expected


def test_standby_with_the_default_gives_up_after_standby_timeout() -> None:
    """A standby whose primary never archives the stop segment, WALG_STOP_BACKUP_TIMEOUT
    unset: the wait ends at STANDBY_TIMEOUT (not never) and the error says what to do."""
    storage = MemoryStorage()
    fake = FakeTime(storage, arrive_after=None)
    limit = effective_timeout(0.0, in_recovery=True)
    assert wait_for_segment(storage, SEGMENT, limit, clock=fake.clock, sleep=fake.sleep) is None
    assert fake.now == pytest.approx(STANDBY_TIMEOUT)
    err = missing_error(SEGMENT, True, "on", "file:///b/", limit)
    assert "within 300s" in err.msg
    assert "SELECT pg_switch_wal() on the primary or set archive_timeout there" in err.hint
    assert "WALG_STOP_BACKUP_TIMEOUT" in err.hint


def test_standby_timeout_error_points_at_the_primary() -> None:
    """pg_backup_stop cancelled on a standby (archive_mode=always): the hint says the primary
    must finish the segment."""
    err = timeout_error(SEGMENT, STANDBY_TIMEOUT, status(None, T1), in_recovery=True)
    assert "not archived within 300s" in err.msg
    assert "SELECT pg_switch_wal() on the primary" in err.hint


def test_stop_backup_timeout_description_states_the_standby_default() -> None:
    """The setting's documented standby default is STANDBY_TIMEOUT."""
    (var,) = (v for v in VARIABLES if v.name == "WALG_STOP_BACKUP_TIMEOUT")
    assert STANDBY_TIMEOUT == 300.0 and "5m on a standby" in var.description
