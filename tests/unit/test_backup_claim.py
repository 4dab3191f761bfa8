"""Claiming a backup name (walg.backup.claim): one backup-push per name, never over a
complete backup, and the claim checked again before the sentinel."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from walg.backup.claim import (
    Claim,
    claim_finished,
    claim_name,
    confirm_claim,
    finish_claim,
    put_sentinel,
    released_on_failure,
)
from walg.backup.deletion import DeleteRequest, delete
from walg.backup.retention import GRACE
from walg.errors import BackupNameTaken, StorageUnavailable
from walg.format import layout
from walg.storage.memory import MemoryStorage

NAME = "base_000000010000000000000004"


def test_second_claim_on_a_name_is_refused_and_says_who_holds_it() -> None:
    """A second claim on a name is refused with the first claimer's host and pid, and the
    first claim is left as it was."""
    storage = MemoryStorage()
    first = claim_name(storage, NAME)
    before = storage.read_bytes(layout.claim_key(NAME))
    with pytest.raises(BackupNameTaken, match="being written by another backup-push") as err:
        claim_name(storage, NAME)
    assert "pid" in err.value.msg and "let it finish" in err.value.hint
    assert storage.read_bytes(layout.claim_key(NAME)) == before
    confirm_claim(storage, first)


def test_complete_backup_is_never_claimed_again() -> None:
    """A name with a sentinel (a WAL-G backup without a claim, or a walg one with its
    claim) is refused before anything is written, with a hint to switch WAL."""
    for with_claim in (False, True):
        storage = MemoryStorage()
        if with_claim:
            put_sentinel(storage, claim_name(storage, NAME), b"{}")
        else:
            storage.put_object(layout.sentinel_key(NAME), b"{}")
        objects = sorted(o.name for o in storage.list_objects())
        with pytest.raises(BackupNameTaken, match="exists already") as err:
            claim_name(storage, NAME)
        assert "pg_switch_wal" in err.value.hint
        assert sorted(o.name for o in storage.list_objects()) == objects


def test_lost_claim_or_existing_sentinel_stops_the_commit() -> None:
    """A claim removed (or replaced) while the push ran fails the check before the
    sentinel; a sentinel that appeared meanwhile is not overwritten."""
    storage = MemoryStorage()
    claim = claim_name(storage, NAME)
    storage.delete_objects([layout.claim_key(NAME)])
    with pytest.raises(BackupNameTaken, match="removed or replaced"):
        confirm_claim(storage, claim)
    storage.put_object(layout.sentinel_key(NAME), b"theirs")
    with pytest.raises(BackupNameTaken, match="committed by another writer"):
        put_sentinel(storage, claim, b"ours")
    assert storage.read_bytes(layout.sentinel_key(NAME)) == b"theirs"


def test_delete_garbage_removes_a_crashed_pushs_claim_after_the_grace() -> None:
    """The claim of a push that crashed (no sentinel) is an unfinished folder: `delete
    garbage` keeps it within the hour's grace and removes it after, freeing the name."""
    storage = MemoryStorage()
    claim_name(storage, NAME)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    delete(storage, DeleteRequest("garbage", confirm=True), out=io.StringIO(), now=soon)
    assert storage.exists(layout.claim_key(NAME))
    later = datetime.now(UTC) + GRACE + timedelta(minutes=1)
    delete(storage, DeleteRequest("garbage", confirm=True), out=io.StringIO(), now=later)
    assert list(storage.list_objects()) == []
    claim_name(storage, NAME)


def test_lost_sentinel_of_a_finished_push_is_garbage_at_once() -> None:
    """A backup whose push finished (claim marked after the sentinel) and whose sentinel
    was then removed is garbage at once, as in WAL-G; a push still running (claim not
    marked) keeps its hour of grace, and so does a folder without a claim."""
    storage = MemoryStorage()
    done, running, foreign = NAME, "base_000000010000000000000006", "base_000000010000000000000008"
    claim = claim_name(storage, done)
    storage.put_object(layout.part_key(done, "part_001.tar.lz4"), b"tar")
    put_sentinel(storage, claim, b"{}")
    finish_claim(storage, claim)
    assert claim_finished(storage, done)
    claim_name(storage, running)
    assert not claim_finished(storage, running)
    storage.put_object(layout.part_key(foreign, "part_001.tar.lz4"), b"WAL-G's")
    storage.delete_objects([layout.sentinel_key(done)])  # `wal-g st rm` of the sentinel
    out = io.StringIO()
    delete(storage, DeleteRequest("garbage", confirm=True), out=out)
    assert not [o for o in storage.list_objects() if o.name.startswith(f"basebackups_005/{done}")]
    assert storage.exists(layout.claim_key(running))
    assert storage.exists(layout.part_key(foreign, "part_001.tar.lz4"))
    assert "though its backup-push finished" in out.getvalue() or done in out.getvalue()


def test_finish_claim_leaves_another_pushs_claim_alone() -> None:
    """Marking is best effort and only ever marks this push's own claim."""
    storage = MemoryStorage()
    claim_name(storage, NAME)
    finish_claim(storage, Claim(NAME, "not-this-push"))
    assert not claim_finished(storage, NAME)


def _fail_inside(storage: MemoryStorage, claim: Claim, error: BaseException) -> None:
    with pytest.raises(type(error)), released_on_failure(storage, claim):
        storage.put_object(layout.part_key(NAME, "part_001.tar.lz4"), b"tar")
        raise error


def test_failed_push_frees_its_name_for_a_retry() -> None:
    """A push that fails after claiming (archive timeout, storage error, Ctrl-C) removes
    its parts and then its claim, so a retry at the same WAL position (a standby keeps
    its start point until the primary's next checkpoint) can claim the name at once."""
    for error in (StorageUnavailable("S3 is down"), KeyboardInterrupt()):
        storage = MemoryStorage()
        _fail_inside(storage, claim_name(storage, NAME), error)
        assert list(storage.list_objects()) == []
        retry = claim_name(storage, NAME)
        confirm_claim(storage, retry)


def test_failure_never_removes_a_committed_or_foreign_backup() -> None:
    """Nothing is removed when the name has a sentinel, or when the claim is no longer
    this push's (another push holds the name now)."""
    storage = MemoryStorage()
    claim = claim_name(storage, NAME)
    storage.put_object(layout.sentinel_key(NAME), b"{}")
    _fail_inside(storage, claim, RuntimeError("after the commit"))
    assert storage.exists(layout.sentinel_key(NAME)) and storage.exists(layout.claim_key(NAME))
    storage = MemoryStorage()
    claim = claim_name(storage, NAME)
    storage.put_object(layout.claim_key(NAME), b'{"WalgToken": "someone else"}')
    _fail_inside(storage, claim, RuntimeError("lost the claim"))
    assert storage.exists(layout.claim_key(NAME))
    assert storage.exists(layout.part_key(NAME, "part_001.tar.lz4"))


class _RecordingStorage(MemoryStorage):
    """Memory storage that records each delete request's keys, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[list[str]] = []

    def _delete(self, keys: Sequence[str]) -> None:
        self.deletes.append(list(keys))
        super()._delete(keys)


def test_deleting_an_unfinished_folder_removes_its_claim_first() -> None:
    """`delete garbage` deletes a stale push's claim in a request of its own before its
    parts: a push that is in fact still running then fails its claim check before the
    sentinel instead of committing a backup whose parts were deleted under it."""
    storage = _RecordingStorage()
    claim = claim_name(storage, NAME)
    for n in range(1, 4):
        storage.put_object(layout.part_key(NAME, f"part_00{n}.tar.lz4"), b"tar")
    later = datetime.now(UTC) + GRACE + timedelta(hours=1)
    delete(storage, DeleteRequest("garbage", confirm=True), out=io.StringIO(), now=later)
    claim_requests = [i for i, keys in enumerate(storage.deletes) if layout.claim_key(NAME) in keys]
    assert claim_requests == [0] and storage.deletes[0] == [layout.claim_key(NAME)]
    with pytest.raises(BackupNameTaken):
        confirm_claim(storage, claim)
