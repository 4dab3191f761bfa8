"""walg makes pg_backup_stop's archive wait itself on a primary (issue 15): the same
files PostgreSQL's XLogArchiveIsBusy checks, polled every few milliseconds instead of
once a second, bounded by the same timeout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from walg.backup.archive_check import archived, wait_for_archiver

SEGMENT = "000000010000000000000003"
HISTORY = "000000010000000000000002.00000028.backup"


def pgdata(tmp_path: Path) -> Path:
    (tmp_path / "pg_wal" / "archive_status").mkdir(parents=True)
    return tmp_path


def mark(data: Path, name: str, suffix: str) -> None:
    status = data / "pg_wal" / "archive_status"
    for old in status.glob(name + ".*"):
        old.unlink()
    (status / f"{name}.{suffix}").touch()


@pytest.mark.parametrize(
    ("status", "file_kept", "expected"),
    [
        ("done", True, True),  # archived
        ("ready", True, False),  # waiting for archive_command
        (None, True, False),  # finished, not yet marked ready: busy, as PostgreSQL says
        (None, False, True),  # archived, then removed by a checkpoint
    ],
)
def test_archived_as_postgresql_decides(
    tmp_path: Path, status: str | None, file_kept: bool, expected: bool
) -> None:
    """.done, .ready, neither with the file in pg_wal, neither without it."""
    data = pgdata(tmp_path)
    if file_kept:
        (data / "pg_wal" / SEGMENT).touch()
    if status:
        mark(data, SEGMENT, status)
    assert archived(str(data), SEGMENT) is expected


def test_an_unreadable_status_is_an_error_not_archived(tmp_path: Path) -> None:
    """Only 'no such file' counts as absent: a status walg cannot read is never taken as
    archived (it raises)."""
    data = pgdata(tmp_path)
    (data / "pg_wal" / "archive_status").rmdir()
    (data / "pg_wal" / "archive_status").write_text("not a folder")
    with pytest.raises(NotADirectoryError):
        archived(str(data), SEGMENT)


class FakeTime:
    """A clock and a sleep that archive the files after ``after`` sleeps (never: None)."""

    def __init__(self, data: Path, after: int | None) -> None:
        self.data, self.after = data, after
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps.append(seconds)
        if len(self.sleeps) == self.after:
            mark(self.data, SEGMENT, "done")
            mark(self.data, HISTORY, "done")


def test_the_wait_ends_within_milliseconds_of_archiving(tmp_path: Path) -> None:
    """Both files archived after three polls: the wait ends at the next one, having slept
    a few milliseconds, not PostgreSQL's second (no limit with timeout 0)."""
    data = pgdata(tmp_path)
    for name in (SEGMENT, HISTORY):
        (data / "pg_wal" / name).touch()
        mark(data, name, "ready")
    fake = FakeTime(data, after=3)
    assert wait_for_archiver(str(data), [SEGMENT, HISTORY], 0.0, clock=fake.clock,
                             sleep=fake.sleep)
    assert len(fake.sleeps) == 3 and fake.now < 0.05


def test_the_wait_gives_up_at_the_timeout(tmp_path: Path) -> None:
    """A segment archive_command never archives: False once the timeout passed."""
    data = pgdata(tmp_path)
    (data / "pg_wal" / SEGMENT).touch()
    mark(data, SEGMENT, "ready")
    fake = FakeTime(data, after=None)
    assert not wait_for_archiver(str(data), [SEGMENT], 3.0, clock=fake.clock, sleep=fake.sleep)
    assert fake.now == pytest.approx(3.0)
    assert max(fake.sleeps) <= 0.5


def test_it_waits_for_every_file(tmp_path: Path) -> None:
    """The stop segment archived but not the backup history file: still waiting."""
    data = pgdata(tmp_path)
    mark(data, SEGMENT, "done")
    (data / "pg_wal" / HISTORY).touch()
    mark(data, HISTORY, "ready")
    assert archived(str(data), SEGMENT) and not archived(str(data), HISTORY)
    fake = FakeTime(data, after=None)
    assert not wait_for_archiver(str(data), [SEGMENT, HISTORY], 1.0, clock=fake.clock,
                                 sleep=fake.sleep)
    assert os.path.exists(data / "pg_wal" / HISTORY)
