"""``wal-show``: the timelines in ``wal_005/``, their parents, gaps and backups (WAL-G's).

Each timeline that has segments is shown with its first and last segment, how many there
are, the missing ones between them (status ``LOST_SEGMENTS``, else ``OK``), its parent and
switch point from the last line of its history file (0 and 0/0 without one: timeline 1, or
a history file that is not archived), and the backups taken on it: those whose start and
finish segments both lie within its range (WAL-G's rule; a backup whose stop segment is
not archived yet is not listed).
"""

from __future__ import annotations

from collections.abc import Callable

from walg.backup import catalog
from walg.backup.catalog import BackupInfo
from walg.backup.wal_verify import archive_listing, read_history
from walg.format.timelines import TimelineInfo, timeline_infos
from walg.postgres.wal import parse_segment_name, segment_number
from walg.storage import Storage

__all__ = ["backups_on", "show"]


def show(
    storage: Storage,
    history: Callable[[int], str | None],
    *,
    with_backups: bool,
    segment_size: int,
    workers: int = catalog.DEFAULT_WORKERS,
) -> tuple[list[TimelineInfo], dict[int, list[BackupInfo]] | None]:
    """The timelines in storage, by id; with ``with_backups`` also the backups on each."""
    archive = archive_listing(storage, segment_size)
    timelines = sorted({tli for tli, _ in archive.segments})
    histories = {tli: read_history(history, tli) for tli in timelines}
    infos = timeline_infos(archive.segments, histories)
    if not with_backups:
        return infos, None
    backups = catalog.list_backups(storage, with_metadata=True, workers=workers)
    return infos, {i.id: backups_on(i, backups, segment_size) for i in infos}


def backups_on(
    info: TimelineInfo, backups: list[BackupInfo], segment_size: int
) -> list[BackupInfo]:
    """The backups (oldest first) whose start and finish segments lie in ``info``'s range."""
    found = []
    for backup in backups:
        try:
            timeline, _ = parse_segment_name(backup.wal_file, segment_size)
        except ValueError:
            continue
        first = segment_number(backup.details.start_lsn, segment_size)
        last = segment_number(backup.details.finish_lsn, segment_size)
        if timeline == info.id and info.first <= first and last <= info.last:
            found.append(backup)
    return found
