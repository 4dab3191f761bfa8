"""Planning a delta backup (pure functions): which backup it is based on, and what each
file becomes in it — stored whole, stored as an increment, or skipped.

Choosing the base (``choose_base``):
- ``--full``, or WALG_DELTA_MAX_STEPS=0 without ``--delta-from-name``: a full backup;
- ``--delta-from-name NAME``: a delta on NAME, whatever the step count;
- otherwise the newest backup (by start time) is the base (WALG_DELTA_ORIGIN=LATEST), or the
  full backup of its chain (LATEST_FULL); when the chain already holds WALG_DELTA_MAX_STEPS
  deltas (LATEST: steps from the full to the newest; LATEST_FULL: deltas made on that full),
  the backup is full again.

What each file becomes (``file_action``):
- a file the base does not have: whole;
- a file whose mtime equals the one the base recorded: skipped (restored from the ancestor
  that stored it), but only when that mtime is older than the base's start by more than
  :data:`MTIME_MARGIN`. File times advance in coarse ticks, so a write that lands right
  after the base read a file can leave its mtime unchanged; such a file is never skipped.
  WAL-G skips on equal mtimes alone;
- a relation data file (under base/ or pg_tblspc/, named digits[.digits]): an increment
  of the pages changed since the base's start LSN (decided page by page while it is read);
- anything else: whole. pg_control is always stored whole.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from walg.backup.catalog import BackupInfo
from walg.errors import BackupNotFound, DeltaBaseError
from walg.format.chain import walk_bases
from walg.format.meta import FileDescription
from walg.format.scan import PG_CONTROL, Entry, is_paged_file
from walg.postgres.wal import format_lsn

__all__ = [
    "MTIME_MARGIN",
    "Action",
    "DeltaBase",
    "check_base",
    "choose_base",
    "file_action",
]

MTIME_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class DeltaBase:
    """The backup a delta is based on, and the new backup's place in its chain."""

    backup: BackupInfo
    count: int  # DeltaCount of the new backup: steps from the chain's full backup
    full_name: str  # DeltaFullName: the full backup at the root of the chain

    @property
    def name(self) -> str:
        return self.backup.name

    @property
    def start_lsn(self) -> int:
        return self.backup.sentinel.start_lsn


def _full_name(backup: BackupInfo, by_name: Mapping[str, BackupInfo]) -> str:
    """The full backup at the root of ``backup``'s chain (see ``DeltaChain.full_name``)."""
    chain = walk_bases(backup.name, lambda name: by_name[name].sentinel.delta_from)
    return chain.full_name(lambda name: by_name[name].sentinel.delta_full_name)


def choose_base(
    backups: Sequence[BackupInfo],
    *,
    max_steps: int,
    origin: str,
    full: bool = False,
    from_name: str | None = None,
) -> DeltaBase | None:
    """The base of the next backup, or None for a full backup (see the module's rules).

    ``backups`` are the complete backups, oldest first (``catalog.list_backups``).
    """
    if full:
        return None
    by_name = {b.name: b for b in backups}
    if from_name:
        base = by_name.get(from_name)
        if base is None:
            raise BackupNotFound(
                f"--delta-from-name: backup {from_name!r} not found",
                hint="see `wal-g backup-list` for the backups that exist",
            )
        return DeltaBase(base, (base.sentinel.delta_count or 0) + 1, _full_name(base, by_name))
    if max_steps <= 0 or not backups:
        return None
    latest = backups[-1]
    if origin == "LATEST_FULL":
        root = by_name.get(_full_name(latest, by_name))
        if root is None:
            return None  # the chain's full backup is gone: start a new chain
        made = sum(1 for b in backups if b.is_delta and _full_name(b, by_name) == root.name)
        return None if made >= max_steps else DeltaBase(root, 1, root.name)
    count = (latest.sentinel.delta_count or 0) + 1
    return None if count > max_steps else DeltaBase(latest, count, _full_name(latest, by_name))


def check_base(
    base: DeltaBase,
    system_identifier: int | None,
    start_lsn: int,
    timeline: int | None = None,
    history: Mapping[int, int] | None = None,
) -> None:
    """Refuse a base from another cluster, one that finished after this backup started, or
    one taken on a timeline this cluster's history left before the base finished.

    The last case follows a point-in-time recovery to before the base's end: the new
    timeline rewrote pages with LSNs below the base's start, which a delta would skip.
    ``history`` is the current timeline's history (``wal.parse_history``)."""
    theirs = base.backup.sentinel.system_identifier
    if theirs is not None and system_identifier is not None and theirs != system_identifier:
        ahead = base.backup.sentinel.finish_lsn > start_lsn
        raise DeltaBaseError(
            f"cannot take a delta on {base.name}: it is a backup of another cluster "
            f"(system identifier {theirs}, this cluster's is {system_identifier})"
            # WAL-G checks the LSN first and says only this; its scripts look for the words
            + ("; its finish LSN is also greater than current LSN" if ahead else ""),
            hint="pass --full, or --delta-from-name with a backup of this cluster",
        )
    if base.backup.sentinel.finish_lsn > start_lsn:
        raise DeltaBaseError(
            f"cannot take a delta on {base.name}: its finish LSN is greater than current LSN "
            "(this backup's start): was the cluster restored to an earlier point?",
            hint="pass --full to start a new chain",
        )
    base_timeline = base.backup.sentinel.timeline
    if timeline is not None and base_timeline != timeline:
        switch = (history or {}).get(base_timeline)
        if switch is None:
            why = f"timeline {timeline} does not descend from it"
        elif base.backup.sentinel.finish_lsn > switch:
            why = f"timeline {timeline} left it at {format_lsn(switch)}, before the base finished"
        else:
            return
        raise DeltaBaseError(
            f"cannot take a delta on {base.name} (timeline {base_timeline}): {why}",
            hint="pass --full to start a new chain on this timeline",
        )


class Action(enum.Enum):
    WHOLE = "whole"
    INCREMENT = "increment"
    SKIP = "skip"


def file_action(
    entry: Entry, base_files: Mapping[str, FileDescription], base_start: datetime | None
) -> Action:
    """What the delta does with the regular file ``entry`` (see the module's rules)."""
    described = base_files.get("/" + entry.name) or base_files.get(entry.name)
    if described is None or entry.name == PG_CONTROL:
        return Action.WHOLE
    if base_start is not None and _unchanged(entry.mtime, described.mtime, base_start):
        return Action.SKIP
    if is_paged_file(entry.name, entry.size):
        return Action.INCREMENT
    return Action.WHOLE


def _unchanged(mtime: float, recorded: datetime, base_start: datetime) -> bool:
    # Recorded times have microseconds; allow for the float's rounding, nothing more.
    same = abs(mtime - recorded.timestamp()) < 2e-6
    return same and recorded < base_start - MTIME_MARGIN
