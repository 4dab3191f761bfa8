"""What ``wal-g delete`` deletes: pure planning, no storage I/O.

Each ``plan_*`` function takes an :class:`Inventory` (the backups, the WAL object keys,
unfinished backup folders, the time now) and returns a :class:`Plan`: the backups to delete
(dependents before their bases), the backups kept and why, unfinished folders and WAL keys
to delete. :mod:`walg.backup.deletion` lists storage, prints the plan and carries it out.

Rules (WAL-G's, plus the safety rules WAL-G lacks):

- Backups are ordered by their recorded start time (then name), never by name alone
  (WAL-G orders so only with ``--use-sentinel-time``; by default it orders by timeline and
  segment of the name, which puts a pg_upgraded cluster's new backups before the old ones).
- A TIME is compared, as WAL-G does, with the time backup-list shows: when the sentinel was
  written (storage's modification time); with ``--use-sentinel-time``, with the start time
  recorded in the backup (:func:`backup_time`).
- ``retain N`` keeps the N newest backups, ``retain FULL N`` the N newest full backups and
  everything newer, ``retain FIND_FULL N`` the N newest and back to the first full backup at
  or before the N-th; ``--after NAME|TIME`` also keeps everything from that backup (or the
  first one at or after TIME) on. ``before NAME|TIME`` keeps that backup (or the oldest one
  at or after TIME), everything newer, and with FIND_FULL back to the first full one. Without
  FIND_FULL a delta at that point is an error: deleting its bases would break it.
- Whatever is kept, its delta ancestors are kept too (a delta may be based on an older chain
  with ``--delta-from-name``). Permanent backups and their ancestors are never deleted, nor
  the base (and its chain) of a delta that a backup-push may be writing right now (an
  unfinished ``base_<start>_D_<base start>`` folder written within :data:`GRACE`).
- WAL segments, ``.backup`` and ``.partial`` files below the oldest start segment of the
  backups kept by the rule (and their ancestors) are deleted, except the WAL from a kept
  (in practice: permanent) backup's start to its finish. ``.history`` files are kept.
  Segments are compared by number, never by name: ``000000020000000000000005`` sorts after
  ``000000010000000000000009`` but lies before it.
- ``target`` deletes one backup and every delta based on it, transitively, and no WAL.
- ``everything`` deletes every object of both folders, refusing while permanent backups
  exist unless FORCE is given.
- ``garbage`` deletes unfinished backup folders (no sentinel) and WAL older than the oldest
  non-permanent backup, except a permanent backup's own (as WAL-G, and as retain does);
  with no backup but permanent ones, WAL older than the oldest, or with
  ``--without-backup-check`` all WAL but the permanent backups' (WAL-G's flag). A folder written
  within :data:`GRACE` is left alone: a backup-push may be writing it right now (its
  sentinel comes last), unless its claim says that push finished (the sentinel was
  removed later, :mod:`walg.backup.claim`): then it goes at once, as in WAL-G. Temporary
  files of crashed writes get the same grace. ``retain`` and ``before`` also delete
  unfinished folders older than what they keep, so that re-running an interrupted delete
  (which removes sentinels first) finishes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from walg.backup.retention_model import (
    GRACE,
    LATEST,
    BackupRef,
    Decision,
    GarbageScope,
    Inventory,
    Plan,
    RetainModifier,
    ancestors,
    backup_time,
    chain_root,
    classify_wal_key,
    deletion_order,
    descendants,
    wal_keys_below,
    wal_position,
)
from walg.errors import BackupNotFound, NoBackupsFound, RetentionError
from walg.format.layout import WAL

__all__ = [
    "GRACE",
    "LATEST",
    "BackupRef",
    "Decision",
    "GarbageScope",
    "Inventory",
    "Plan",
    "RetainModifier",
    "backup_time",
    "classify_wal_key",
    "plan_before",
    "plan_everything",
    "plan_garbage",
    "plan_retain",
    "plan_target",
    "wal_position",
]

# -- the modes ------------------------------------------------------------------------------


def plan_retain(
    inventory: Inventory,
    count: int,
    modifier: RetainModifier = None,
    after: str | datetime | None = None,
    start_time: bool = False,
) -> Plan:
    """``delete retain [FULL|FIND_FULL] count [--after NAME|TIME]``.

    With ``after`` (WAL-G's ``--after``), also keep every backup from the first one at or
    after that backup or time (the first full one with FULL or FIND_FULL): of the two
    points, the older is where keeping starts. With fewer backups than ``count`` nothing is
    deleted (WAL-G would then keep only those after ``after``, against its own "keep 5 most
    recent backups and backups made after"). ``start_time``: see :func:`backup_time`.
    """
    if count < 1:
        raise RetentionError(f"cannot retain {count} backups", "COUNT must be at least 1")
    backups = _sorted(inventory.backups)
    pool = [b for b in backups if not b.is_delta] if modifier == "FULL" else backups
    what = "full backups" if modifier == "FULL" else "backups"
    if len(pool) <= count:
        note = f"there are {len(pool)} {what}, not more than {count}: nothing to delete"
        return _nothing(backups, note)
    target = pool[-count]
    label = f"{target.name} (the {_ordinal(count)} newest {what[:-1]})"
    index = backups.index(target)
    if modifier == "FIND_FULL":
        full = _full_at_or_before(backups, index)
        if full is None:
            return _nothing(backups, f"no full backup at or before {label}: nothing to delete")
        index = full
    if after is not None:
        later = _first_after(backups, after, modifier is not None, start_time)
        if later is not None and later < index:
            index, label = later, f"{backups[later].name} (the first backup {_after(after)})"
    if modifier is None and backups[index].is_delta:
        raise _delta_error(backups[index], f"retain FIND_FULL {count}", label)
    return _keep_from(inventory, backups, index, f"older than {backups[index].name}")


def plan_before(
    inventory: Inventory,
    target: str | datetime,
    find_full: bool = False,
    start_time: bool = False,
) -> Plan:
    """``delete before [FIND_FULL] NAME|TIME``: delete what is older than that backup, or
    than the oldest backup whose time (:func:`backup_time`) is at or after TIME."""
    backups = _sorted(inventory.backups)
    if isinstance(target, datetime):
        later = _first_after(backups, target, False, start_time)
        if later is None:
            basis = start_time or any(b.modified is None for b in backups)
            stamp = _stamp(target)
            what = f"started at or after {stamp}" if basis else f"written at or after {stamp}"
            return _nothing(backups, f"no backup {what}: nothing to delete")
        index = later
    else:
        index = backups.index(_find(backups, target))
    chosen = backups[index]
    if find_full:
        found = _full_at_or_before(backups, index)
        if found is None:
            return _nothing(
                backups, f"no full backup at or before {chosen.name}: nothing to delete"
            )
        index = found
    elif chosen.is_delta:
        raise _delta_error(chosen, f"before FIND_FULL {chosen.name}", chosen.name)
    return _keep_from(inventory, backups, index, f"older than {backups[index].name}")


def plan_everything(inventory: Inventory, force: bool = False) -> Plan:
    """``delete everything [FORCE]``: every backup, unfinished folder and WAL file."""
    backups = _sorted(inventory.backups)
    permanent = [b.name for b in backups if b.permanent]
    if permanent and not force:
        raise RetentionError(
            f"{len(permanent)} permanent backup(s) exist: {', '.join(permanent)}",
            "use `wal-g delete everything FORCE` to delete them too, or unmark them first "
            "with `wal-g backup-mark --impermanent NAME`",
        )
    return Plan(
        delete=tuple(Decision(b.name, "everything") for b in deletion_order(backups)),
        unfinished=tuple(Decision(n, "everything") for n in sorted(inventory.unfinished)),
        wal=tuple(sorted(inventory.wal_keys)),
        temporary=tuple(sorted(inventory.temporary)),
        sweep=True,
    )


def plan_target(inventory: Inventory, name: str, find_full: bool = False) -> Plan:
    """``delete target [FIND_FULL] NAME``: one backup and every delta based on it."""
    backups = _sorted(inventory.backups)
    if name not in {b.name for b in backups} and name in inventory.unfinished:
        return _unfinished_target(inventory, name)
    if name == LATEST and backups:
        name = backups[-1].name
    chosen = _find(backups, name)
    root = chain_root(backups, chosen) if find_full else chosen
    doomed = {root.name} | descendants(backups, root.name)
    blocked = [
        f"{b.name} is {why}" for b, why, _ in _pinned(inventory, backups) if b.name in doomed
    ]
    if blocked:
        raise RetentionError(
            f"cannot delete {root.name}: {'; '.join(blocked)}",
            "unmark permanent backups first with `wal-g backup-mark --impermanent NAME`; "
            "let a running backup-push finish",
        )
    reason = {n: f"based on {root.name}" for n in doomed}
    reason[root.name] = "target" if root is chosen else f"full backup of {chosen.name}"
    return Plan(
        delete=tuple(
            Decision(b.name, reason[b.name]) for b in deletion_order(backups) if b.name in doomed
        ),
        keep=tuple(
            Decision(b.name, f"not based on {root.name}") for b in backups if b.name not in doomed
        ),
    )


def plan_garbage(
    inventory: Inventory, scope: GarbageScope = None, without_backup_check: bool = False
) -> Plan:
    """``delete garbage [ARCHIVES|BACKUPS] [--without-backup-check]``: unfinished backups,
    WAL older than the oldest non-permanent backup except each permanent backup's own (with
    only permanent backups: older than the oldest, or with the flag all WAL outside their
    ranges)."""
    backups = _sorted(inventory.backups)
    keep = tuple(Decision(b.name, "complete backup") for b in backups)
    unfinished: tuple[Decision, ...] = ()
    notes: list[str] = []
    if scope != "ARCHIVES":
        unfinished, recent = _old_unfinished(inventory, lambda name: True)
        notes += recent
    wal: tuple[str, ...] = ()
    horizon = None
    if scope != "BACKUPS":
        if without_backup_check and all(b.permanent for b in backups):
            wal = wal_keys_below(inventory.wal_keys, None, backups)
            notes.append("no backup but permanent ones, --without-backup-check: WAL outside "
                         "the permanent backups goes")
        elif backups:  # as WAL-G: below the oldest non-permanent backup, as retain does
            bases = [b for b in backups if not b.permanent] or backups
            horizon = min(bases, key=lambda b: wal_position(b.start_wal)).start_wal
            wal = wal_keys_below(inventory.wal_keys, horizon, backups)
        else:
            notes.append("no complete backup: WAL is kept (it may be needed by the first "
                         "one; --without-backup-check deletes it)")
    temporary = _old_temporary(inventory, scope)
    return Plan(
        keep=keep,
        unfinished=unfinished,
        wal=wal,
        temporary=temporary,
        wal_horizon=horizon,
        notes=tuple(notes),
    )


# -- shared rules ---------------------------------------------------------------------------


def _sorted(backups: Iterable[BackupRef]) -> list[BackupRef]:
    """Oldest first by recorded start time, then name."""
    return sorted(backups, key=lambda b: (b.start_time, b.name))


def _find(backups: Sequence[BackupRef], name: str) -> BackupRef:
    for backup in backups:
        if backup.name == name:
            return backup
    if not backups:
        raise NoBackupsFound("no backups found in storage")
    newest = ", ".join(b.name for b in reversed(backups[-10:]))
    raise BackupNotFound(f"backup {name!r} not found; available: {newest}")


def _first_after(
    backups: Sequence[BackupRef], after: str | datetime, full_only: bool, start_time: bool
) -> int | None:
    """The first backup, oldest first, at or after backup ``after`` or whose time is at or
    after time ``after`` (a full one if ``full_only``), as WAL-G's ``--after``."""
    if isinstance(after, datetime):
        first = next(
            (i for i, b in enumerate(backups) if backup_time(b, start_time) >= after), None
        )
    else:
        first = backups.index(_find(backups, after))
    if first is None:
        return None
    return next((i for i in range(first, len(backups)) if not (full_only and
                                                                 backups[i].is_delta)), None)


def _after(after: str | datetime) -> str:
    if isinstance(after, datetime):
        return f"written at or after {_stamp(after)}"
    return f"from {after} on"


def _full_at_or_before(backups: Sequence[BackupRef], index: int) -> int | None:
    for i in range(index, -1, -1):
        if not backups[i].is_delta:
            return i
    return None


def _delta_error(backup: BackupRef, suggestion: str, label: str) -> RetentionError:
    return RetentionError(
        f"{label} is a delta backup: deleting what is older would delete the backups "
        f"it is based on ({backup.delta_from})",
        f"use `wal-g delete {suggestion}` to keep back to its full backup",
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _nothing(backups: Sequence[BackupRef], note: str) -> Plan:
    return Plan(keep=tuple(Decision(b.name, "kept") for b in backups), notes=(note,))


def _keep_from(
    inventory: Inventory, backups: Sequence[BackupRef], index: int, why_delete: str
) -> Plan:
    """Keep ``backups[index:]`` with their ancestors and every permanent backup with its
    ancestors; delete the rest with the WAL and unfinished folders below what is kept."""
    by_name = {b.name: b for b in backups}
    keep = {b.name: f"{backups[index].name} or newer" for b in backups[index:]}
    for backup in backups[index:]:
        for base in ancestors(by_name, backup):
            keep.setdefault(base.name, f"base of kept {backup.name}")
    needed = [by_name[n] for n in keep]
    for backup, why, why_bases in _pinned(inventory, backups):
        keep.setdefault(backup.name, why)
        for base in ancestors(by_name, backup):
            keep.setdefault(base.name, why_bases)
    doomed = [b for b in backups if b.name not in keep]
    horizon = min(needed, key=lambda b: wal_position(b.start_wal)).start_wal
    kept = [by_name[n] for n in keep]
    below = wal_position(horizon)
    unfinished, notes = _old_unfinished(inventory, lambda n: _name_position(n) < below)
    return Plan(
        delete=tuple(Decision(b.name, why_delete) for b in deletion_order(doomed)),
        keep=tuple(Decision(b.name, keep[b.name]) for b in backups if b.name in keep),
        unfinished=unfinished,
        wal=wal_keys_below(inventory.wal_keys, horizon, kept),
        wal_horizon=horizon,
        notes=tuple(notes),
    )


def _pinned(inventory: Inventory, backups: Sequence[BackupRef]) -> list[tuple[BackupRef, str, str]]:
    """Backups no rule may delete, with why, and why for their bases: permanent ones, and
    the base of a delta that a backup-push may be writing now (an unfinished folder
    ``base_<start>_D_<base's start>`` written within the grace period)."""
    found = [(b, "permanent", f"base of permanent {b.name}") for b in backups if b.permanent]
    recent = inventory.now - GRACE
    for folder, written in sorted(inventory.unfinished.items()):
        if written < recent or folder in inventory.finished or "_D_" not in folder:
            continue
        base_wal = folder.split("_D_", 1)[1][:24]
        why = f"base of {folder}, which a backup-push may be writing"
        found += [(b, why, why) for b in backups if b.start_wal == base_wal]
    return found


def _name_position(folder: str) -> int:
    """The start segment order key of a backup-named folder (``base_<24 hex>...``)."""
    return wal_position(folder.removeprefix("base_"))


def _old_unfinished(
    inventory: Inventory, wanted: Callable[[str], bool]
) -> tuple[tuple[Decision, ...], list[str]]:
    """Unfinished folders for which ``wanted(name)`` holds and that were last written
    before the grace period; notes naming the recent ones left alone."""
    cutoff = inventory.now - GRACE
    chosen, notes = [], []
    for name, written in sorted(inventory.unfinished.items()):
        if not wanted(name):
            continue
        if name in inventory.finished:
            chosen.append(Decision(name, "no sentinel, though its backup-push finished"))
        elif written < cutoff:
            chosen.append(Decision(name, f"no sentinel; last written {_stamp(written)}"))
        else:
            notes.append(
                f"{name} has no sentinel but was written at {_stamp(written)}, within the "
                f"last {_hours(GRACE)}: left alone (a backup-push may be writing it)"
            )
    return tuple(chosen), notes


def _unfinished_target(inventory: Inventory, name: str) -> Plan:
    (chosen, notes) = _old_unfinished(inventory, lambda n: n == name)
    if not chosen:
        raise RetentionError(notes[0], "wait until no backup-push can be writing it")
    return Plan(unfinished=chosen)


def _old_temporary(inventory: Inventory, scope: GarbageScope) -> tuple[str, ...]:
    cutoff = inventory.now - GRACE
    skip = {"ARCHIVES": "basebackups_005/", "BACKUPS": WAL + "/"}.get(scope or "", "\0")
    return tuple(
        sorted(
            key
            for key, written in inventory.temporary.items()
            if written < cutoff and not key.startswith(skip)
        )
    )


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return "hour" if hours == 1 else f"{hours:g} hours"
