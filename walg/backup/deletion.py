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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TextIO

from walg.backup import catalog, retention
from walg.backup.deletion_report import render_plan, size_text
from walg.backup.retention import GarbageScope, Inventory, Plan, RetainModifier
from walg.backup.snapshot import Snapshot, take_snapshot
from walg.errors import ConfigError, IntegrityError, StorageError
from walg.format import layout
from walg.format.meta import parse_time
from walg.logs import get_logger
from walg.storage.base import Storage

__all__ = ["DeleteRequest", "delete", "make_plan"]

_log = get_logger("walg.backup.deletion")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


@dataclass(frozen=True)
class DeleteRequest:
    """One ``wal-g delete`` command line: mode, its upper-case modifier and argument."""

    mode: str  # retain, before, everything, target, garbage
    modifier: str | None = None
    argument: str | int | None = None  # retain: count; before/target: name (or time)
    confirm: bool = False
    after: str | None = None  # retain --after NAME|TIME
    start_time: bool = False  # --use-sentinel-time: compare TIME with the start time
    without_backup_check: bool = False  # garbage --without-backup-check
    user_data: str | None = None  # target --target-user-data (JSON, else that text)


def make_plan(inventory: Inventory, request: DeleteRequest) -> Plan:
    """The plan of ``request`` for ``inventory`` (RetentionError, BackupNotFound...)."""
    mode, modifier, argument = request.mode, request.modifier, request.argument
    if mode == "retain":
        if not isinstance(argument, int):
            raise ConfigError(f"not a backup count: {argument!r}", "give a number, e.g. 5")
        which: RetainModifier = (
            "FULL" if modifier == "FULL" else "FIND_FULL" if modifier == "FIND_FULL" else None
        )
        after = None if request.after is None else parse_before(request.after)
        return retention.plan_retain(inventory, argument, which, after, request.start_time)
    if mode == "before":
        when = parse_before(str(argument))
        if isinstance(when, datetime) and when > inventory.now:
            raise ConfigError(
                f"cannot delete before a future time: {argument}",
                "give a time in the past (as backup-list shows it), or a backup name",
            )
        return retention.plan_before(
            inventory, when, modifier == "FIND_FULL", request.start_time
        )
    if mode == "everything":
        return retention.plan_everything(inventory, force=modifier == "FORCE")
    if mode == "target":
        return retention.plan_target(inventory, str(argument), find_full=modifier == "FIND_FULL")
    if mode == "garbage":
        scope: GarbageScope = (
            "ARCHIVES" if modifier == "ARCHIVES" else "BACKUPS" if modifier == "BACKUPS" else None
        )
        return retention.plan_garbage(inventory, scope, request.without_backup_check)
    raise ConfigError(f"unknown delete mode {mode!r}", "see `wal-g delete --help`")


def parse_before(text: str) -> str | datetime:
    """A time (RFC 3339 as backup-list prints it, with any offset or fraction; a date means
    its midnight UTC) or else a backup name."""
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
    if request.mode == "target" and request.user_data is not None:
        request = _by_user_data(request, snapshot, storage.url)
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


def _by_user_data(request: DeleteRequest, snapshot: Snapshot, where: str) -> DeleteRequest:
    """``delete target --target-user-data DATA`` as ``delete target NAME`` (WAL-G's
    selector: exactly one backup has that UserData; a name too is refused)."""
    from walg.config.parse import parse_json_or_text

    if request.argument is not None:
        raise ConfigError(
            "both a backup name and --target-user-data were given",
            "give the backup's NAME, or --target-user-data, not both (as WAL-G)",
        )
    data = parse_json_or_text(request.user_data or "")
    found = catalog.select_by_user_data(snapshot.backups, data, where)
    return replace(request, argument=found.name, user_data=None)


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
