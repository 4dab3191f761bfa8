"""The data of retention planning: backups, inventories, plans; WAL names; delta chains.

Pure (no I/O). :mod:`walg.backup.retention` holds the modes' rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from walg.compression import method_for_extension
from walg.format.chain import DeltaChain, dependents, walk_bases
from walg.format.layout import WAL
from walg.postgres.wal import MIN_SEGMENT_SIZE, WalFileKind, segment_number_from_name, wal_file_kind

__all__ = [
    "GRACE",
    "LATEST",
    "BackupRef",
    "Decision",
    "GarbageScope",
    "Inventory",
    "Plan",
    "RetainModifier",
    "ancestors",
    "backup_time",
    "chain_root",
    "classify_wal_key",
    "deletion_order",
    "descendants",
    "wal_keys_below",
    "wal_position",
]

GRACE: Final = timedelta(hours=1)
"""Unfinished folders and temporary files written more recently than this are left alone."""

LATEST: Final = "LATEST"
RetainModifier = Literal["FULL", "FIND_FULL"] | None
GarbageScope = Literal["ARCHIVES", "BACKUPS"] | None

_DELETABLE_WAL: Final = frozenset({WalFileKind.SEGMENT, WalFileKind.BACKUP, WalFileKind.PARTIAL})


@dataclass(frozen=True)
class BackupRef:
    """What planning needs to know of one complete backup.

    ``start_wal``/``finish_wal`` are the WAL file names holding its start and finish LSN;
    ``modified`` is when its sentinel was written (storage's time: what backup-list shows).
    """

    name: str
    start_time: datetime
    start_wal: str
    finish_wal: str
    delta_from: str | None = None
    delta_full_name: str | None = None
    permanent: bool = False
    modified: datetime | None = None

    @property
    def is_delta(self) -> bool:
        return self.delta_from is not None


@dataclass(frozen=True)
class Inventory:
    """What storage holds. ``unfinished`` maps backup folders without a sentinel to their
    newest object's time; ``finished`` names those of them whose backup-push claim says
    the push finished (the sentinel was removed after it: no push is writing them);
    ``temporary`` maps keys of crashed writes' temporary files to their time."""

    backups: Sequence[BackupRef]
    wal_keys: Sequence[str]
    now: datetime
    unfinished: Mapping[str, datetime] = field(default_factory=dict)
    finished: frozenset[str] = frozenset()
    temporary: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """A backup (or unfinished folder) and why it is deleted or kept."""

    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """What to delete. ``delete`` is in deletion order: dependents before their bases."""

    delete: tuple[Decision, ...] = ()
    keep: tuple[Decision, ...] = ()
    unfinished: tuple[Decision, ...] = ()
    wal: tuple[str, ...] = ()
    temporary: tuple[str, ...] = ()
    wal_horizon: str | None = None
    notes: tuple[str, ...] = ()
    sweep: bool = False  # everything: also every other object of both folders

    @property
    def empty(self) -> bool:
        return not (self.delete or self.unfinished or self.wal or self.temporary or self.sweep)


def backup_time(backup: BackupRef, start_time: bool = False) -> datetime:
    """The time ``delete before TIME`` and ``retain --after TIME`` compare, as WAL-G's: the
    sentinel's modification time (backup-list's time), or with ``--use-sentinel-time``
    (``start_time``) the start time recorded in the backup. Without a known modification
    time, the start time."""
    if start_time or backup.modified is None:
        return backup.start_time
    return backup.modified


# -- WAL names ------------------------------------------------------------------------------


def wal_position(name: str) -> int:
    """An order key of the segment a WAL file name starts with, for any segment size.

    With the smallest segment size every name's last part is below the divisor, so the key
    orders ``(log, seg)`` exactly as segment numbers of the real size do; timelines are
    ignored. Raises ValueError if ``name`` does not start with a segment name.
    """
    return segment_number_from_name(name[:24], MIN_SEGMENT_SIZE)


def classify_wal_key(key: str) -> tuple[str, WalFileKind] | None:
    """``(WAL file name, kind)`` of an object key in wal_005/, or None for other objects."""
    prefix = WAL + "/"
    if not key.startswith(prefix) or "/" in key[len(prefix) :]:
        return None
    name = key[len(prefix) :]
    kind = wal_file_kind(name)
    if kind is None and "." in name:
        stem, ext = name.rsplit(".", 1)
        if method_for_extension(ext) is not None:
            name, kind = stem, wal_file_kind(stem)
    return None if kind is None else (name, kind)


# -- delta chains ---------------------------------------------------------------------------


def _walk(by_name: Mapping[str, BackupRef], backup: BackupRef) -> DeltaChain:
    return walk_bases(
        backup.name, lambda name: (backup if name == backup.name else by_name[name]).delta_from
    )


def ancestors(by_name: Mapping[str, BackupRef], backup: BackupRef) -> list[BackupRef]:
    """The backups ``backup`` is based on, nearest first (as far as they exist)."""
    return [by_name[name] for name in _walk(by_name, backup).bases]


def chain_root(backups: Sequence[BackupRef], backup: BackupRef) -> BackupRef:
    """The full backup a delta is based on (see ``DeltaChain.full_name``); when it does not
    exist, the oldest existing backup of the chain."""
    by_name = {b.name: b for b in backups}
    chain = _walk(by_name, backup)
    oldest = by_name.get(chain.names[-1], backup)
    full = chain.full_name(lambda name: by_name.get(name, backup).delta_full_name)
    return by_name.get(full, oldest)


def descendants(backups: Sequence[BackupRef], name: str) -> set[str]:
    """The backups based on ``name``, directly or not."""
    return dependents(name, ((b.name, b.delta_from) for b in backups))


def deletion_order(backups: Sequence[BackupRef]) -> list[BackupRef]:
    """Deepest deltas first, then newest first: no backup goes before one based on it."""
    by_name = {b.name: b for b in backups}
    depth = {b.name: len(ancestors(by_name, b)) for b in backups}
    newest_first = sorted(backups, key=lambda b: (b.start_time, b.name), reverse=True)
    return sorted(newest_first, key=lambda b: -depth[b.name])


def wal_keys_below(
    keys: Iterable[str], horizon: str | None, kept: Iterable[BackupRef]
) -> tuple[str, ...]:
    """Keys of segments, .backup and .partial files below ``horizon``'s segment (all of
    them when None), except those from a kept backup's start to its finish."""
    below = wal_position(horizon) if horizon is not None else None
    ranges = [(wal_position(b.start_wal), wal_position(b.finish_wal)) for b in kept]
    chosen = []
    for key in keys:
        found = classify_wal_key(key)
        if found is None or found[1] not in _DELETABLE_WAL:
            continue
        position = wal_position(found[0])
        kept_range = any(lo <= position <= hi for lo, hi in ranges)
        if (below is None or position < below) and not kept_range:
            chosen.append(key)
    return tuple(sorted(chosen))
