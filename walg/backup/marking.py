"""``wal-g backup-mark``: make a backup permanent (with its delta bases) or impermanent.

A permanent backup is never deleted by ``wal-g delete`` (except ``everything FORCE``), nor
are its delta ancestors or the WAL from its start to its finish. Marking a delta permanent
marks every backup it is based on too, oldest first, as WAL-G does. Unmarking changes only
the named backup and is refused while a permanent delta depends on it.

The mark is written to both ``metadata.json`` (what WAL-G's backup-mark rewrites and what
``backup-list --detail`` shows) and the sentinel's ``IsPermanent``, so the two never
disagree. Both documents are rewritten from their stored JSON with only that key changed:
keys walg does not model (such as per-file data embedded in old sentinels) are kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from walg.backup import catalog
from walg.backup.catalog import BackupInfo, read_json_object
from walg.errors import ObjectNotFound, RetentionError
from walg.format import layout
from walg.format.chain import dependents, walk_bases
from walg.format.meta import ExtendedMetadata
from walg.logs import get_logger
from walg.storage.base import Storage

__all__ = ["mark_backup"]

_log = get_logger("walg.backup.marking")


def mark_backup(
    storage: Storage, name: str, permanent: bool, workers: int = catalog.DEFAULT_WORKERS
) -> list[str]:
    """Mark backup ``name`` (or LATEST) permanent or not; lines to print for the user."""
    backups = catalog.list_backups(storage, with_metadata=True, workers=workers)
    by_name = {b.name: b for b in backups}
    if name == catalog.LATEST and backups:
        name = backups[-1].name
    if name not in by_name:
        catalog.find_backup(storage, name, workers=workers)  # raises the lookup's error
        raise RetentionError(f"backup {name!r} has a malformed sentinel and cannot be marked")
    target = by_name[name]
    if permanent:
        chain, missing = _chain(by_name, target)
        lines = (
            [f"warning: {target.name} is based on {missing}, which is missing"] if missing else []
        )
        changes = [b for b in reversed(chain) if not b.is_permanent]
    else:
        _refuse_if_needed(backups, target)
        lines, changes = [], [target] if target.is_permanent else []
    state = "permanent" if permanent else "impermanent"
    for backup in changes:
        _rewrite(storage, backup, permanent)
        _log.info("backup marked", backup=backup.name, permanent=permanent)
        lines.append(f"marked {backup.name} {state}")
    if not changes:
        lines.append(f"{target.name} is already {state}: nothing to change")
    return lines


def _chain(by_name: Mapping[str, BackupInfo], backup: BackupInfo) -> tuple[list[BackupInfo], str]:
    """``backup`` and the backups it is based on, nearest first; and a missing base's name."""
    chain = walk_bases(backup.name, lambda name: by_name[name].sentinel.delta_from)
    return [by_name[name] for name in chain.names], chain.missing


def _refuse_if_needed(backups: list[BackupInfo], target: BackupInfo) -> None:
    """RetentionError if a permanent delta is based on ``target``, directly or not."""
    based = dependents(target.name, ((b.name, b.sentinel.delta_from) for b in backups))
    pinned = sorted(b.name for b in backups if b.name in based and b.is_permanent)
    if pinned:
        raise RetentionError(
            f"cannot mark {target.name} impermanent: permanent delta backup(s) "
            f"{', '.join(pinned)} are based on it",
            f"mark them impermanent first (wal-g backup-mark --impermanent {pinned[-1]})",
        )


def _rewrite(storage: Storage, backup: BackupInfo, permanent: bool) -> None:
    """Set the mark in metadata.json (created from the sentinel if missing), then in the
    sentinel; every other key of both documents is kept as stored."""
    meta_key = layout.metadata_key(backup.name)
    try:
        meta = read_json_object(storage, meta_key)
    except ObjectNotFound:
        meta = ExtendedMetadata.from_sentinel(backup.sentinel).to_json()
    meta["is_permanent"] = permanent
    storage.put_object(meta_key, json.dumps(meta).encode())
    sentinel_key = layout.sentinel_key(backup.name)
    sentinel = read_json_object(storage, sentinel_key)
    sentinel["IsPermanent"] = permanent
    storage.put_object(sentinel_key, json.dumps(sentinel).encode())
