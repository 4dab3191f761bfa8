"""What ``wal-g delete`` plans over: one listing of storage (:class:`Snapshot`), taken once,
and the facts retention planning needs of each backup (:func:`backup_ref`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from walg.backup import catalog, retention
from walg.backup.catalog import BackupInfo
from walg.backup.claim import claim_finished
from walg.backup.retention import BackupRef, Inventory
from walg.errors import RetentionError
from walg.format import layout
from walg.postgres.wal import wal_file_name
from walg.storage.base import ObjectInfo, Storage
from walg.storage.file import FileStorage

__all__ = ["Snapshot", "backup_ref", "take_snapshot"]


@dataclass
class Snapshot:
    """What storage held when listed: backups, and every object of both folders."""

    backups: list[BackupInfo]
    base_objects: list[ObjectInfo]
    wal_objects: list[ObjectInfo]
    temporary: list[ObjectInfo] = field(default_factory=list)
    malformed: list[ObjectInfo] = field(default_factory=list)  # sentinels that do not parse
    finished: frozenset[str] = frozenset()  # unfinished folders with a finished claim

    def check_readable(self, mode: str) -> None:
        """Refuse to plan around a backup whose sentinel cannot be read: its start is
        unknown, so the WAL it needs (and its delta chain) could be deleted as garbage.
        ``everything`` deletes it anyway, so it may go on."""
        if self.malformed and mode != "everything":
            keys = ", ".join(o.name for o in self.malformed)
            raise RetentionError(
                f"cannot plan `delete {mode}`: the sentinel {keys} is malformed, so the WAL "
                "and base backups that backup needs are unknown; nothing was deleted",
                hint="restore or repair that sentinel; if that backup is lost, delete the "
                "sentinel object by hand and run `wal-g delete garbage`",
            )

    def folder_objects(self) -> dict[str, list[ObjectInfo]]:
        """Objects under ``basebackups_005/<name>/`` by ``name``."""
        folders: dict[str, list[ObjectInfo]] = defaultdict(list)
        prefix = layout.BASEBACKUPS + "/"
        for info in self.base_objects:
            rest = info.name[len(prefix) :]
            if "/" in rest:
                folders[rest.split("/", 1)[0]].append(info)
        return folders

    def sentinel_names(self) -> set[str]:
        names = (layout.name_from_sentinel_key(o.name) for o in self.base_objects)
        return {name for name in names if name is not None}

    def unfinished(self) -> dict[str, datetime]:
        """Backup-named folders without a sentinel object: their newest object's time."""
        with_sentinel = self.sentinel_names()
        return {
            name: max(o.modified for o in objects)
            for name, objects in self.folder_objects().items()
            if name not in with_sentinel and layout.is_backup_name(name)
        }

    def inventory(self, now: datetime) -> Inventory:
        return Inventory(
            backups=[backup_ref(b) for b in self.backups],
            wal_keys=[o.name for o in self.wal_objects],
            now=now,
            unfinished=self.unfinished(),
            finished=self.finished,
            temporary={o.name: o.modified for o in self.temporary},
        )


def backup_ref(backup: BackupInfo) -> BackupRef:
    """What retention planning needs of a listed backup.

    The start WAL file comes from the backup's name (exact for any segment size); the
    finish's is computed for 16 MiB segments, which WAL-G assumes too.
    """
    sentinel = backup.sentinel
    if layout.is_backup_name(backup.name):
        start = backup.wal_file
    else:
        start = wal_file_name(sentinel.timeline, sentinel.start_lsn)
    finish = wal_file_name(sentinel.timeline, max(sentinel.finish_lsn, sentinel.start_lsn))
    return BackupRef(
        name=backup.name,
        start_time=backup.start_time,
        start_wal=start,
        finish_wal=max(start, finish, key=retention.wal_position),
        delta_from=sentinel.delta_from,
        delta_full_name=sentinel.delta_full_name,
        permanent=backup.is_permanent,
        modified=backup.modified,
    )


def take_snapshot(storage: Storage, workers: int = catalog.DEFAULT_WORKERS) -> Snapshot:
    """List everything ``wal-g delete`` looks at (sentinels and metadata are read)."""
    damaged: list[ObjectInfo] = []
    backups = catalog.list_backups(
        storage, with_metadata=True, workers=workers, malformed=damaged
    )
    base = list(storage.list_objects(layout.BASEBACKUPS + "/"))
    wal = list(storage.list_objects(layout.WAL + "/"))
    temporary: list[ObjectInfo] = []
    if isinstance(storage, FileStorage):
        for folder in (layout.BASEBACKUPS, layout.WAL):
            temporary += storage.list_temporary(folder)
    snapshot = Snapshot(backups, base, wal, temporary, damaged)
    claimed = {o.name for o in base if o.name.endswith("/" + layout.CLAIM)}
    done = (n for n in snapshot.unfinished() if layout.claim_key(n) in claimed)
    snapshot.finished = frozenset(n for n in done if claim_finished(storage, n))
    return snapshot
