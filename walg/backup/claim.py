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
(no sentinel) an hour after its last write, claim included. Once the sentinel is written
the claim is marked finished (``FinishTime``): a folder whose sentinel is later lost (a
partial delete, ``st rm``) is then known to be no push in progress, and ``delete garbage``
removes it at once, as WAL-G does.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from walg.errors import BackupNameTaken, ObjectExists, ObjectNotFound, WalgError
from walg.format import layout
from walg.format.meta import format_time
from walg.logs import get_logger
from walg.storage.base import Storage

_log = get_logger("walg")

__all__ = [
    "Claim",
    "claim_finished",
    "claim_name",
    "confirm_claim",
    "finish_claim",
    "put_sentinel",
    "released_on_failure",
]


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


@contextlib.contextmanager
def released_on_failure(storage: Storage, claim: Claim) -> Iterator[None]:
    """Run the push holding ``claim``; if it fails (any exception, Ctrl-C, SIGTERM), remove
    what it stored and then the claim, so that a retry at the same WAL position (a standby
    keeps its start point until the primary's next checkpoint) is not refused for an
    hour. Nothing is removed once the name has a sentinel, or when the claim is no longer
    this push's. A push killed outright leaves its folder to `delete garbage`."""
    try:
        yield
    except BaseException:
        try:
            _release(storage, claim)
        except (WalgError, OSError) as err:  # best effort: the original error matters
            _log.warning("could not remove the objects of the failed backup", backup=claim.name,
                         error=str(err), hint="`wal-g delete garbage` removes them later")
        raise


def _release(storage: Storage, claim: Claim) -> None:
    if storage.exists(layout.sentinel_key(claim.name)):
        return
    if _read_claim(storage, claim.name).get("WalgToken") != claim.token:
        return
    folder = f"{layout.BASEBACKUPS}/{claim.name}/"
    claim_key = layout.claim_key(claim.name)
    stored = [o.name for o in storage.list_objects(folder) if o.name != claim_key]
    storage.delete_objects(stored)
    storage.delete_objects([claim_key])  # last: the name is free only once the folder is


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


def finish_claim(storage: Storage, claim: Claim) -> None:
    """Mark the claim of the committed backup finished (call after its sentinel). Best
    effort: the backup is complete either way; an unmarked claim only means that, should
    its sentinel be lost, ``delete garbage`` waits out the grace period for it."""
    try:
        doc = _read_claim(storage, claim.name)
        if doc.get("WalgToken") == claim.token:
            doc["FinishTime"] = format_time(datetime.now(UTC))
            storage.put_object(layout.claim_key(claim.name), json.dumps(doc).encode())
    except WalgError as err:
        _log.warning("could not mark the backup-push claim finished", backup=claim.name,
                     error=err.msg)


def claim_finished(storage: Storage, name: str) -> bool:
    """Whether the folder ``name`` holds a claim of a backup-push that finished."""
    return "FinishTime" in _read_claim(storage, name)


def _refuse_complete(storage: Storage, name: str) -> None:
    if storage.exists(layout.sentinel_key(name)):
        raise BackupNameTaken(
            f"backup {name} exists already; backup-push never writes over a complete "
            "backup, and nothing was written",
            hint="no WAL was written since that backup started, so it holds this moment "
            "too; to take another anyway, write something on the primary and run `SELECT "
            "pg_switch_wal()` there, and backup-push again (on a standby: CHECKPOINT on the "
            "primary, and wait until the standby has replayed it)",
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
