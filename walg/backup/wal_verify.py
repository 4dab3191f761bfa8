"""``wal-verify``: is the WAL archive complete from the oldest backup to now? (WAL-G's checks)

- ``integrity``: every segment from the start of the earliest usable backup (not
  permanent, on the current timeline's history: :func:`walg.format.timelines.
  backup_is_usable`) up to the one before the current segment must be in ``wal_005/``.
  Without a usable backup the scan goes down to segment 1 and lost segments before the
  first found one are only a WARNING, as in WAL-G. ``--backup-name`` starts from that
  backup instead (a permanent one too), and fails if it is not on the current history.
- ``timeline``: the current timeline must be the highest one in ``wal_005/`` (a higher
  one means another cluster, e.g. a promoted standby, archives there: split brain).

The current timeline and segment come from the server (PG* settings): the segment holding
``LSN - 1`` where LSN is the write position on a primary, the received position on a
standby (:meth:`walg.postgres.connection.PgConnection.current_lsn`), and the timeline as
walg reads it everywhere (:meth:`~walg.postgres.connection.PgConnection.current_timeline`,
right also just after a promotion); or from ``--timeline`` and ``--lsn``, without a
connection. The archive is listed once for both checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from walg.backup import catalog
from walg.backup.wal_report import CheckResult, TimelineDetails
from walg.errors import BackupNotFound, IntegrityError, WalgError
from walg.format import layout
from walg.format.timelines import (
    Archive,
    HistoryRecord,
    archive_contents,
    backup_is_usable,
    collapse,
    earliest_usable,
    integrity_status,
    parse_history_records,
    scan_integrity,
    switch_segments,
    switches_by_timeline,
    timeline_status,
)
from walg.logs import get_logger
from walg.postgres.wal import history_file_name, parse_segment_name, segment_name, segment_number
from walg.storage import Storage

__all__ = ["CHECKS", "Position", "archive_listing", "read_history", "run_checks"]

CHECKS = ("integrity", "timeline")
"""The checks wal-verify knows, in the order it reports them."""

_log = get_logger("walg.backup.wal_verify")

HistoryText = Callable[[int], str | None]


@dataclass(frozen=True)
class Position:
    """Where the cluster is: its timeline and the WAL position (the segment before the one
    holding ``lsn - 1`` is the newest the archive should hold)."""

    timeline: int
    lsn: int
    segment_size: int

    @property
    def segment(self) -> int:
        return segment_number(max(self.lsn - 1, 0), self.segment_size)


def archive_listing(storage: Storage, segment_size: int) -> Archive:
    """What ``wal_005/`` holds, from one listing."""
    listing = storage.list_folder(layout.WAL)
    names = (info.name.rsplit("/", 1)[-1] for info in listing.objects)
    return archive_contents(names, segment_size)


def read_history(read: HistoryText, timeline: int) -> list[HistoryRecord]:
    """The records of ``timeline``'s history file; [] when the archive has none."""
    text = read(timeline)
    if text is None:
        return []
    try:
        return parse_history_records(text)
    except ValueError as err:
        raise IntegrityError(
            f"the archived {history_file_name(timeline)} is not a timeline history file: {err}"
        ) from None


def run_checks(
    storage: Storage,
    checks: Sequence[str],
    position: Position,
    history: HistoryText,
    *,
    uploading: int,
    delayed: int,
    backup_name: str | None = None,
    workers: int = catalog.DEFAULT_WORKERS,
) -> dict[str, CheckResult]:
    """The result of each of ``checks`` (names from :data:`CHECKS`)."""
    archive = archive_listing(storage, position.segment_size)
    results: dict[str, CheckResult] = {}
    for check in dict.fromkeys(checks):
        if check == "timeline":
            highest = archive.highest_timeline
            results[check] = CheckResult(
                timeline_status(position.timeline, highest),
                timelines=TimelineDetails(position.timeline, highest),
            )
        elif check == "integrity":
            results[check] = _integrity(
                storage, archive, position, history, uploading, delayed, backup_name, workers
            )
        else:
            raise WalgError(f"invalid check specified: {check}", hint="checks: integrity, timeline")
    return results


def _integrity(
    storage: Storage,
    archive: Archive,
    position: Position,
    history: HistoryText,
    uploading: int,
    delayed: int,
    backup_name: str | None,
    workers: int,
) -> CheckResult:
    records = read_history(history, position.timeline)
    ended = switches_by_timeline(records, position.segment_size)
    if backup_name is not None:
        stop, no_backups = _named_start(storage, backup_name, position, ended, workers), False
    else:
        found = _earliest_start(storage, position, ended, workers)
        no_backups = found is None
        stop = 1 if found is None else found
    scanned = scan_integrity(
        (position.timeline, position.segment),
        stop,
        archive.segments,
        switch_segments(records, position.segment_size),
        uploading=uploading,
        delayed=delayed,
    )
    ranges = collapse(scanned)
    return CheckResult(
        integrity_status(ranges, no_backups), ranges=ranges, segment_size=position.segment_size
    )


def _start(backup: catalog.BackupInfo, segment_size: int) -> tuple[int, int] | None:
    try:
        return parse_segment_name(backup.wal_file, segment_size)
    except ValueError:
        return None


def _earliest_start(
    storage: Storage, position: Position, ended: dict[int, int], workers: int
) -> int | None:
    """The start segment of the earliest usable backup; None (with a warning) if none."""
    backups = catalog.list_backups(storage, with_metadata=True, workers=workers)
    candidates = [
        (b.name, start, b.is_permanent)
        for b in backups
        if (start := _start(b, position.segment_size)) is not None
    ]
    best = earliest_usable(candidates, position.timeline, ended)
    if best is None:
        first = segment_name(position.timeline, 1, position.segment_size)
        _log.warning(
            "no usable backup found (none, or only permanent ones or ones off the current "
            f"timeline's history): scanning down to {first}"
        )
        return None
    _log.info("detected the earliest available backup", backup=best[0])
    return best[1]


def _named_start(
    storage: Storage, name: str, position: Position, ended: dict[int, int], workers: int
) -> int:
    backup = catalog.find_backup(storage, name, workers=workers)
    start = _start(backup, position.segment_size)
    if start is None or not backup_is_usable(
        start, position.timeline, ended, allow_permanent=True
    ):
        raise BackupNotFound(
            f"backup {name} does not start on the history of timeline {position.timeline}",
            hint="choose a backup of the current timeline or of one of its ancestors "
            "(see `wal-g wal-show`)",
        )
    return start[1]
