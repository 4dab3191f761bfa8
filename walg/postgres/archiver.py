"""What PostgreSQL says about WAL archiving: ``archive_mode`` and ``pg_stat_archiver``.

backup-push reads these to say why a backup's WAL did not reach the archive: the archiver's
last failure (which segment, when) is the first thing a DBA needs, and the error text of
archive_command itself is only in the server log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from walg.postgres.connection import PgConnection

__all__ = ["ARCHIVING_MODES", "ArchiverStatus", "archive_mode", "archiver_status"]

ARCHIVING_MODES: Final = frozenset({"on", "always"})


@dataclass(frozen=True, slots=True)
class ArchiverStatus:
    """One row of ``pg_stat_archiver`` (counters since the statistics were last reset)."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None

    @property
    def failing(self) -> bool:
        """Whether the latest thing the archiver did was to fail."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time >= self.last_archived_time

    def describe(self) -> str:
        """One clause for an error message: the last failure, then the last success."""
        archived = (
            f"last archived {self.last_archived_wal} at {_when(self.last_archived_time)}"
            if self.last_archived_wal
            else "nothing archived since the statistics were reset"
        )
        if self.last_failed_wal is None:
            return f"pg_stat_archiver shows no failure ({archived}): archiving is slow"
        failed = (
            f"the archiver last failed on {self.last_failed_wal} at "
            f"{_when(self.last_failed_time)} ({self.failed_count} failures)"
        )
        if self.failing:
            return f"archive_command is failing: {failed}; {archived}"
        return f"{failed}, but it has archived since ({archived})"


def _when(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def archive_mode(pg: PgConnection) -> str:
    """``off``, ``on`` or ``always``."""
    return str(pg.query("SHOW archive_mode")[0][0]).lower()


def archiver_status(pg: PgConnection) -> ArchiverStatus:
    """The archiver's counters (``pg_stat_archiver``, PostgreSQL 9.4+)."""
    (row,) = pg.query(
        "SELECT archived_count, last_archived_wal, last_archived_time,"
        " failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver"
    )
    return ArchiverStatus(
        archived_count=int(row[0]),
        last_archived_wal=row[1],
        last_archived_time=row[2],
        failed_count=int(row[3]),
        last_failed_wal=row[4],
        last_failed_time=row[5],
    )
