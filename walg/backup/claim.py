"""A backup name is claimed once: two backup-push never both succeed under one name.

Backups started at the same moment on an idle cluster share a start LSN, hence a name.
backup-push claims ``basebackups_005/<name>/walg_push_claim.json`` with a create-if-absent
write (:meth:`Storage.put_new`) before it stores any part: of two pushes only one gets
the claim; the other stops before writing anything. A name that already has a sentinel
is a complete backup and is never written over. Before committing, the claim is checked
to still hold this push's token, and the sentinel itself is written create-if-absent, so
a storage that ignores conditional writes is still checked twice.

The claim is an ordinary object of the backup's folder: WAL-G does not read it, deleting
the backup deletes it, and ``delete garbage`` removes the folder of a push that crashed
(no sentinel) an hour after its last write, claim included.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from walg.backup import layout
from walg.backup.meta import format_time
from walg.errors import BackupNameTaken, ObjectExists, ObjectNotFound
from walg.storage.base import Storage

__all__ = ["Claim", "claim_name", "confirm_claim", "put_sentinel"]


@dataclass(frozen=True)
class Claim:
    """This push's claim on ``name``: ``token`` is in no other push's claim."""

    name: str
    token: str


def claim_name(storage: Storage, name: str) -> Claim:
    """Claim ``name`` for this push, or raise BackupNameTaken (nothing written then)."""
    _refuse_complete(storage, name)
    claim = Claim(name, os.urandom(16).hex())
    doc = {
        "WalgToken": claim.token,
        "Hostname": socket.gethostname(),
        "Pid": os.getpid(),
        "StartTime": format_time(datetime.now(UTC)),
    }
    try:
        storage.put_new(layout.claim_key(name), json.dumps(doc).encode())
    except ObjectExists:
        _refuse_complete(storage, name)  # a complete backup (its push claimed it too)
        raise _claimed_by_another(name, _read_claim(storage, name)) from None
    return claim


def confirm_claim(storage: Storage, claim: Claim) -> None:
    """Raise BackupNameTaken unless the claim still holds this push's token."""
    doc = _read_claim(storage, claim.name)
    if doc.get("WalgToken") != claim.token:
        raise BackupNameTaken(
            f"the claim on backup name {claim.name} was removed or replaced while this "
            "backup-push was writing it; nothing was committed",
            hint="check that no `wal-g delete` or other backup-push ran against the same "
            "storage meanwhile, then run backup-push again",
        )


def put_sentinel(storage: Storage, claim: Claim, data: bytes) -> None:
    """Write the sentinel of the claimed backup, only if the name has none yet."""
    try:
        storage.put_new(layout.sentinel_key(claim.name), data)
    except ObjectExists:
        raise BackupNameTaken(
            f"backup {claim.name} was committed by another writer while this backup-push "
            "was writing it; this backup was not committed",
            hint="run `wal-g backup-list` to see it; another backup-push (or WAL-G) wrote "
            "to the same storage at the same WAL position",
        ) from None


def _refuse_complete(storage: Storage, name: str) -> None:
    if storage.exists(layout.sentinel_key(name)):
        raise BackupNameTaken(
            f"backup {name} exists already; backup-push never writes over a complete "
            "backup, and nothing was written",
            hint="no WAL was written since that backup started, so it holds this moment "
            "too; to take another anyway, write something on the primary and run `SELECT "
            "pg_switch_wal()` there (on a standby, then CHECKPOINT), and backup-push again",
        )


def _read_claim(storage: Storage, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(storage.read_bytes(layout.claim_key(name)))
    except ObjectNotFound:
        return {}
    except ValueError:  # not JSON: not a claim walg wrote
        return {}
    return doc if isinstance(doc, dict) else {}


def _claimed_by_another(name: str, doc: dict[str, Any]) -> BackupNameTaken:
    host, pid, since = (doc.get(k, "?") for k in ("Hostname", "Pid", "StartTime"))
    who = f"{host}, pid {pid}, since {since}"
    return BackupNameTaken(
        f"backup {name} is being written by another backup-push ({who}); this one "
        "stopped before writing anything",
        hint="both started at the same WAL position, so that backup holds this moment "
        "too: let it finish. If it crashed, `wal-g delete garbage` removes its objects "
        "an hour after their last write; writing to the database lets a new backup-push "
        "start at a new position",
    )
