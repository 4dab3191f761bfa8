"""``wal-g delete``: list storage, plan with :mod:`walg.backup.retention`, print, delete.

Without ``confirm`` nothing is deleted: the plan is printed and that is all. With it, each
backup goes in the plan's order (dependents before their bases): its sentinel first, so the
backup stops existing at once for backup-list and backup-fetch, then the objects of its
folder (listed afresh). Unfinished folders, WAL and temporary files follow. Should storage
fail half-way, running the same command again finishes the job: folders whose sentinel is
already gone are unfinished folders older than what is kept, which retain and before delete.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from walg.backup import catalog, layout, retention
from walg.backup.catalog import BackupInfo
from walg.backup.deletion_report import render_plan, size_text
from walg.backup.meta import parse_time
from walg.backup.retention import BackupRef, GarbageScope, Inventory, Plan, RetainModifier
from walg.errors import ConfigError, IntegrityError, RetentionError, StorageError
from walg.logs import get_logger
from walg.postgres.wal import wal_file_name
from walg.storage.base import ObjectInfo, Storage
from walg.storage.file import FileStorage

__all__ = ["DeleteRequest", "Snapshot", "backup_ref", "delete", "make_plan", "take_snapshot"]

_log = get_logger("walg.backup.deletion")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


@dataclass(frozen=True)
class DeleteRequest:
    """One ``wal-g delete`` command line: mode, its upper-case modifier and argument."""

    mode: str  # retain, before, everything, target, garbage
    modifier: str | None = None
    argument: str | int | None = None  # retain: count; before/target: name (or time)
    confirm: bool = False


@dataclass
class Snapshot:
    """What storage held when listed: backups, and every object of both folders."""

    backups: list[BackupInfo]
    base_objects: list[ObjectInfo]
    wal_objects: list[ObjectInfo]
    temporary: list[ObjectInfo] = field(default_factory=list)
    malformed: list[ObjectInfo] = field(default_factory=list)  # sentinels that do not parse

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
    return Snapshot(backups, base, wal, temporary, damaged)


def make_plan(inventory: Inventory, request: DeleteRequest) -> Plan:
    """The plan of ``request`` for ``inventory`` (RetentionError, BackupNotFound...)."""
    mode, modifier, argument = request.mode, request.modifier, request.argument
    if mode == "retain":
        if not isinstance(argument, int):
            raise ConfigError(f"not a backup count: {argument!r}", "give a number, e.g. 5")
        which: RetainModifier = (
            "FULL" if modifier == "FULL" else "FIND_FULL" if modifier == "FIND_FULL" else None
        )
        return retention.plan_retain(inventory, argument, which)
    if mode == "before":
        return retention.plan_before(
            inventory, parse_before(str(argument)), find_full=modifier == "FIND_FULL"
        )
    if mode == "everything":
        return retention.plan_everything(inventory, force=modifier == "FORCE")
    if mode == "target":
        return retention.plan_target(inventory, str(argument), find_full=modifier == "FIND_FULL")
    if mode == "garbage":
        scope: GarbageScope = (
            "ARCHIVES" if modifier == "ARCHIVES" else "BACKUPS" if modifier == "BACKUPS" else None
        )
        return retention.plan_garbage(inventory, scope)
    raise ConfigError(f"unknown delete mode {mode!r}", "see `wal-g delete --help`")


def parse_before(text: str) -> str | datetime:
    """A time (RFC 3339, or a date meaning its midnight UTC) or else a backup name."""
    if not _DATE.match(text):
        return text
    stamp = text + "T00:00:00Z" if _DATE.fullmatch(text) else text
    try:
        return parse_time(stamp)
    except (IntegrityError, ValueError):
        raise ConfigError(
            f"not a time: {text!r}", "write times like 2024-01-31T23:59:59Z (RFC 3339, UTC)"
        ) from None


def delete(
    storage: Storage,
    request: DeleteRequest,
    *,
    out: TextIO | None = None,
    now: datetime | None = None,
    workers: int = catalog.DEFAULT_WORKERS,
) -> Plan:
    """List, plan, print the plan and, if ``request.confirm``, carry it out."""
    out = out or sys.stdout
    snapshot = take_snapshot(storage, workers)
    snapshot.check_readable(request.mode)
    plan = make_plan(snapshot.inventory(now or datetime.now(UTC)), request)
    out.write(render_plan(plan, snapshot, _title(request), request.confirm))
    out.flush()
    if request.confirm and not plan.empty:
        try:
            _carry_out(storage, plan, snapshot, out)
        except StorageError as err:
            err.hint = (
                f"{err.hint + '; ' if err.hint else ''}nothing that is kept was touched: "
                "run the same command again to finish the deletion"
            )
            raise
    return plan


def _title(request: DeleteRequest) -> str:
    words = ["delete", request.mode, request.modifier, request.argument]
    return " ".join(str(w) for w in words if w is not None)


def _carry_out(storage: Storage, plan: Plan, snapshot: Snapshot, out: TextIO) -> None:
    done_objects = done_bytes = 0
    listed = {o.name: o.size for o in snapshot.base_objects}
    for decision in plan.delete:
        sentinel = layout.sentinel_key(decision.name)
        storage.delete_objects([sentinel])
        count, size = _delete_listed(storage, _folder(decision.name))
        size += listed.get(sentinel, 0)
        _log.info("backup deleted", backup=decision.name, objects=count + 1)
        out.write(f"deleted backup {decision.name} ({count + 1} objects, {size_text(size)})\n")
        done_objects, done_bytes = done_objects + count + 1, done_bytes + size
    for decision in plan.unfinished:
        count, size = _delete_listed(storage, _folder(decision.name))
        out.write(f"deleted unfinished folder {decision.name} ({count} objects)\n")
        done_objects, done_bytes = done_objects + count, done_bytes + size
    sizes = {o.name: o.size for o in [*snapshot.wal_objects, *snapshot.temporary]}
    for keys, what in ((plan.wal, "WAL files"), (plan.temporary, "temporary files")):
        if keys:
            storage.delete_objects(keys)
            size = sum(sizes.get(k, 0) for k in keys)
            out.write(f"deleted {len(keys)} {what} ({size_text(size)})\n")
            done_objects, done_bytes = done_objects + len(keys), done_bytes + size
    if plan.sweep:
        for prefix in (layout.BASEBACKUPS + "/", layout.WAL + "/"):
            count, size = _delete_listed(storage, prefix)
            done_objects, done_bytes = done_objects + count, done_bytes + size
    out.write(f"done: deleted {done_objects} objects, {size_text(done_bytes)}\n")
    out.flush()


def _folder(name: str) -> str:
    return f"{layout.BASEBACKUPS}/{name}/"


def _delete_listed(storage: Storage, prefix: str) -> tuple[int, int]:
    """Delete every object under ``prefix`` as listed now; (count, bytes).

    A backup-push claim goes first, in its own request: a push still writing that folder
    (idle for an hour, waiting for archiving) then fails its check before the sentinel
    instead of committing a backup whose parts were deleted under it."""
    objects = list(storage.list_objects(prefix))
    claims = [o.name for o in objects if o.name.endswith("/" + layout.CLAIM)]
    if claims:
        storage.delete_objects(claims)
    storage.delete_objects(o.name for o in objects if o.name not in claims)
    return len(objects), sum(o.size for o in objects)
