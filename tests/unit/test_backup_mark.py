"""``wal-g backup-mark``: permanent marks on a backup and its delta bases, written to both
metadata.json and the sentinel; unmarking rules; what delete and backup-list make of it."""

from __future__ import annotations

import io
import json

import pytest
from servers.logtext import untimed
from servers.synthetic_backups import at, put_backup, put_wal

from walg.backup import listing
from walg.backup.catalog import list_backups
from walg.backup.deletion import DeleteRequest, delete
from walg.backup.marking import mark_backup
from walg.cli import main
from walg.errors import BackupNotFound, RetentionError
from walg.format import layout
from walg.storage.base import Storage
from walg.storage.file import FileStorage
from walg.storage.memory import MemoryStorage


def chain(storage: Storage) -> tuple[str, str, str, str]:
    """full a, delta a1 on a, delta a2 on a1, and a later full b."""
    a = put_backup(storage, 2, at(0))
    a1 = put_backup(storage, 5, at(1), delta_from=a)
    a2 = put_backup(storage, 7, at(2), delta_from=a1)
    b = put_backup(storage, 10, at(3))
    return a, a1, a2, b


def marks(storage: Storage) -> dict[str, tuple[bool, bool]]:
    """Per backup: (metadata.json's is_permanent, the sentinel's IsPermanent)."""
    found = {}
    for backup in list_backups(storage):
        meta = json.loads(storage.read_bytes(layout.metadata_key(backup.name)))
        sentinel = json.loads(storage.read_bytes(layout.sentinel_key(backup.name)))
        found[backup.name] = (meta["is_permanent"], sentinel["IsPermanent"])
    return found


def test_marking_a_delta_marks_its_bases_in_both_documents() -> None:
    """A delta marked permanent marks every base, oldest first, in metadata.json and the
    sentinel; other keys of the sentinel (embedded per-file data) are kept."""
    storage = MemoryStorage()
    a, a1, a2, b = chain(storage)
    lines = mark_backup(storage, a1, permanent=True)
    assert lines == [f"marked {a} permanent", f"marked {a1} permanent"]
    assert marks(storage) == {
        a: (True, True),
        a1: (True, True),
        a2: (False, False),
        b: (False, False),
    }
    sentinel = json.loads(storage.read_bytes(layout.sentinel_key(a1)))
    assert sentinel["Files"] and sentinel["DeltaFrom"] == a
    detail = listing.render(list_backups(storage, with_metadata=True), detail=True, as_json=True)
    assert [d["is_permanent"] for d in json.loads(detail)] == [True, True, False, False]


def test_unmarking_a_base_of_a_permanent_delta_is_refused() -> None:
    """--impermanent on a base fails while a permanent delta depends on it (directly or
    not); unmarking the delta first, then the base, works and changes only each one."""
    storage = MemoryStorage()
    a, a1, a2, _b = chain(storage)
    mark_backup(storage, a2, permanent=True)
    with pytest.raises(RetentionError, match=a2) as caught:
        mark_backup(storage, a, permanent=False)
    assert f"--impermanent {a2}" in caught.value.hint
    assert mark_backup(storage, a2, permanent=False) == [f"marked {a2} impermanent"]
    assert marks(storage)[a1] == (True, True)
    assert mark_backup(storage, a1, permanent=False) == [f"marked {a1} impermanent"]
    assert mark_backup(storage, a, permanent=False) == [f"marked {a} impermanent"]
    assert not any(m for pair in marks(storage).values() for m in pair)


def test_marking_again_changes_nothing() -> None:
    """Marking an already permanent backup writes nothing and says so."""
    storage = MemoryStorage()
    a, *_ = chain(storage)
    mark_backup(storage, a, permanent=True)
    stamp = storage.stat_object(layout.sentinel_key(a)).modified
    assert mark_backup(storage, a, permanent=True) == [
        f"{a} is already permanent: nothing to change"
    ]
    assert storage.stat_object(layout.sentinel_key(a)).modified == stamp


def test_missing_metadata_is_created_from_the_sentinel() -> None:
    """A backup without metadata.json gets one carrying the mark and the sentinel's facts."""
    storage = MemoryStorage()
    a, *_ = chain(storage)
    storage.delete_objects([layout.metadata_key(a)])
    mark_backup(storage, a, permanent=True)
    meta = json.loads(storage.read_bytes(layout.metadata_key(a)))
    assert meta["is_permanent"] is True and meta["start_lsn"] == 2 * 16 * 1024 * 1024 + 0x28


def test_unknown_backup_is_not_found() -> None:
    storage = MemoryStorage()
    chain(storage)
    with pytest.raises(BackupNotFound):
        mark_backup(storage, "base_000000010000000000000099", permanent=True)


def test_delete_keeps_a_marked_chain_and_its_wal() -> None:
    """After backup-mark, retain 1 keeps the marked delta, its bases and the WAL from the
    delta's start to its finish, and deletes the rest of the old WAL."""
    storage = MemoryStorage()
    put_wal(storage, 1, range(1, 12))
    a, a1, _a2, b = chain(storage)
    mark_backup(storage, a1, permanent=True)
    out = io.StringIO()
    delete(storage, DeleteRequest("retain", "FULL", 1, confirm=True), out=out)
    assert [x.name for x in list_backups(storage)] == [a, a1, b]
    left = {o.name for o in storage.list_objects("wal_005/")}
    assert left == {f"wal_005/0000000100000000000000{s:02X}.lz4" for s in (2, 5, 10, 11)}


def test_cli_backup_mark(walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """`wal-g backup-mark NAME` prints what it marked; an unknown name is ERROR + HINT."""
    storage = FileStorage(walg_env["WALG_FILE_PREFIX"])
    a, a1, _a2, _b = chain(storage)
    assert main(["backup-mark", a1], environ=walg_env) == 0
    assert capsys.readouterr().out == f"marked {a} permanent\nmarked {a1} permanent\n"
    assert main(["backup-list", "--detail"], environ=walg_env) == 0
    rows = capsys.readouterr().out.splitlines()
    column = rows[0].split().index("is_permanent")
    assert [r.split()[column] for r in rows[1:]] == ["true", "true", "false", "false"]
    assert main(["backup-mark", "--impermanent", a], environ=walg_env) == 1
    err = untimed(capsys.readouterr().err)
    assert err.startswith(f"ERROR: cannot mark {a} impermanent") and "HINT:" in err
    assert main(["backup-mark", "base_000000010000000000000099"], environ=walg_env) == 1
    assert "not found" in untimed(capsys.readouterr().err)
