"""``wal-g delete`` carried out on storage: the printed plan, dry runs, the order of
deletions, interrupted deletions, garbage with temporary files, and the command line."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers.logtext import untimed
from servers.synthetic_backups import at, put_backup, put_history, put_wal, wal_key

from walg.backup.catalog import list_backups
from walg.backup.deletion import DeleteRequest, delete
from walg.cli import main
from walg.errors import ConfigError, PermissionDenied, RetentionError, StorageError
from walg.format import layout
from walg.storage.base import RetryPolicy, Storage
from walg.storage.file import TEMP_MARK, FileStorage
from walg.storage.memory import MemoryStorage

NO_RETRY = RetryPolicy(max_retries=0)


def keys(storage: Storage) -> set[str]:
    return {o.name for o in storage.list_objects()}


def run(storage: Storage, request: DeleteRequest, now: datetime | None = None) -> str:
    out = io.StringIO()
    delete(storage, request, out=out, now=now)
    return out.getvalue()


def three_fulls_and_a_delta(storage: Storage) -> list[str]:
    """a (seg 2), a1 delta of a (seg 6), b (seg 10), c (seg 20); WAL 1..24; a history."""
    put_wal(storage, 1, range(1, 25), size=100)
    put_history(storage, 2)
    a = put_backup(storage, 2, at(0))
    a1 = put_backup(storage, 6, at(1), delta_from=a)
    b = put_backup(storage, 10, at(2))
    c = put_backup(storage, 20, at(3))
    return [a, a1, b, c]


def folder_keys(storage: Storage, name: str) -> set[str]:
    return {o.name for o in storage.list_objects(f"{layout.BASEBACKUPS}/{name}/")} | {
        layout.sentinel_key(name)
    }


def test_dry_run_prints_the_plan_and_deletes_nothing() -> None:
    """Without --confirm storage is unchanged and the output names every backup to delete
    (with objects and bytes), the WAL range with count and bytes, and the totals."""
    storage = MemoryStorage()
    a, a1, _b, _c = three_fulls_and_a_delta(storage)
    before = keys(storage)
    text = run(storage, DeleteRequest("retain", None, 2))
    assert keys(storage) == before
    doomed = folder_keys(storage, a) | folder_keys(storage, a1)
    doomed_bytes = sum(o.size for o in storage.list_objects() if o.name in doomed)
    lines = text.splitlines()
    assert (
        lines[0] == "wal-g delete retain 2: dry run, nothing is deleted (add --confirm to delete)"
    )
    section = lines[lines.index("backups to delete: 2") + 1 : lines.index("backups kept: 2")]
    assert [line.split()[0] for line in section] == [a1, a]
    assert f"{len(folder_keys(storage, a))} objects" in section[1]
    assert (
        "  timeline 1 segment: 000000010000000000000001 .. 000000010000000000000009"
        "  9 files (900 B)" in lines
    )
    total = len(doomed) + 9
    assert lines[-1] == (
        f"total to delete: 2 backups, 9 WAL files: {total} objects, {doomed_bytes + 900} bytes "
        "(3.0 KiB)"
    )


def test_confirm_deletes_exactly_the_plan() -> None:
    """With --confirm exactly the planned backups' objects and WAL go; the rest stays."""
    storage = MemoryStorage()
    a, a1, b, c = three_fulls_and_a_delta(storage)
    before = keys(storage)
    doomed = folder_keys(storage, a) | folder_keys(storage, a1)
    doomed |= {wal_key(1, s) for s in range(1, 10)}
    text = run(storage, DeleteRequest("retain", None, 2, confirm=True))
    assert keys(storage) == before - doomed
    assert [x.name for x in list_backups(storage)] == [b, c]
    assert f"done: deleted {len(doomed)} objects" in text


class Recording(MemoryStorage):
    """Memory storage that records each delete call, and fails the call number
    ``fail_at`` (from 1) with a storage error."""

    def __init__(self, fail_at: int = 0) -> None:
        super().__init__(retry=NO_RETRY)
        self.calls: list[list[str]] = []
        self.fail_at = fail_at

    def _delete(self, keys: Sequence[str]) -> None:
        self.calls.append(list(keys))
        if len(self.calls) == self.fail_at:
            raise StorageError("injected failure")
        super()._delete(keys)


def test_sentinel_goes_first_and_dependents_before_bases() -> None:
    """Each backup's sentinel is deleted alone, before its folder; deltas before bases."""
    storage = Recording()
    a, a1, _b, _c = three_fulls_and_a_delta(storage)
    run(storage, DeleteRequest("retain", None, 2, confirm=True))
    assert storage.calls[0] == [layout.sentinel_key(a1)]
    assert all(k.startswith(f"{layout.BASEBACKUPS}/{a1}/") for k in storage.calls[1])
    assert storage.calls[2] == [layout.sentinel_key(a)]
    assert all(k.startswith(f"{layout.BASEBACKUPS}/{a}/") for k in storage.calls[3])


def test_interrupted_delete_finishes_when_run_again() -> None:
    """A storage failure after a sentinel went stops the run with a hint to re-run; the
    backup is already gone from the list, and the same command later deletes the rest."""
    storage = Recording(fail_at=2)
    a, a1, b, c = three_fulls_and_a_delta(storage)
    reference = MemoryStorage()
    three_fulls_and_a_delta(reference)
    run(reference, DeleteRequest("retain", None, 2, confirm=True))
    with pytest.raises(StorageError) as caught:
        run(storage, DeleteRequest("retain", None, 2, confirm=True))
    assert "run the same command again" in caught.value.hint
    assert [x.name for x in list_backups(storage)] == [a, b, c]
    assert any(k.startswith(f"{layout.BASEBACKUPS}/{a1}/") for k in keys(storage))
    later = datetime.now(UTC) + timedelta(hours=2)  # the folder's objects are old by then
    text = run(storage, DeleteRequest("retain", None, 2, confirm=True), now=later)
    assert f"unfinished backup folders to delete: 1\n  {a1}" in text
    assert keys(storage) == keys(reference)


def test_unfinished_folder_written_recently_is_left_alone() -> None:
    """An unfinished folder below what retain keeps but written just now (a backup-push
    may be writing it) is not deleted, and the output says why."""
    storage = MemoryStorage()
    three_fulls_and_a_delta(storage)
    running = put_backup(storage, 3, at(0.5), with_sentinel=False)
    text = run(storage, DeleteRequest("retain", None, 2, confirm=True))
    assert f"note: {running} has no sentinel" in text and "left alone" in text
    assert any(k.startswith(f"{layout.BASEBACKUPS}/{running}/") for k in keys(storage))


def _age(path: Path, hours: float) -> None:
    old = time.time() - hours * 3600
    os.utime(path, (old, old))


def test_garbage_on_file_storage_removes_old_leftovers_and_temporary_files(
    tmp_path: Path,
) -> None:
    """garbage deletes an unfinished folder and temporary files older than an hour, and
    WAL before the oldest backup; recent ones and .history stay."""
    storage = FileStorage(str(tmp_path))
    _a, _a1, _b, _c = three_fulls_and_a_delta(storage)
    stale = put_backup(storage, 1, at(-1), with_sentinel=False)
    fresh = put_backup(storage, 30, at(9), with_sentinel=False)
    for path in (tmp_path / layout.BASEBACKUPS / stale).rglob("*"):
        _age(path, 2)
    wal_dir = tmp_path / layout.WAL
    (wal_dir / f"{TEMP_MARK}000000010000000000000019.lz4.ab12").write_bytes(b"x" * 7)
    old_temp = wal_dir / f"{TEMP_MARK}000000010000000000000018.lz4.cd34"
    old_temp.write_bytes(b"x" * 5)
    _age(old_temp, 2)
    text = run(storage, DeleteRequest("garbage"))
    assert f"unfinished backup folders to delete: 1\n  {stale}" in text
    assert f"wal_005/{old_temp.name}" in text and "ab12" not in text
    run(storage, DeleteRequest("garbage", confirm=True))
    left = keys(storage)
    assert not any(k.startswith(f"{layout.BASEBACKUPS}/{stale}/") for k in left)
    assert any(k.startswith(f"{layout.BASEBACKUPS}/{fresh}/") for k in left)
    assert wal_key(1, 1) not in left and wal_key(1, 2) in left
    assert "wal_005/00000002.history.lz4" in left
    assert not old_temp.exists()
    assert (wal_dir / f"{TEMP_MARK}000000010000000000000019.lz4.ab12").exists()


def test_everything_force_empties_both_folders_only() -> None:
    """everything FORCE deletes every object of basebackups_005/ and wal_005/ (malformed
    sentinels included) and nothing else."""
    storage = MemoryStorage()
    three_fulls_and_a_delta(storage)
    put_backup(storage, 40, at(5), permanent=True)
    storage.put_object(layout.sentinel_key("base_000000010000000000000050"), b"not json")
    storage.put_object("other/keep.txt", b"mine")
    with pytest.raises(RetentionError):
        run(storage, DeleteRequest("everything", confirm=True))
    text = run(storage, DeleteRequest("everything", "FORCE", confirm=True))
    assert "other objects to delete: 1 object" in text
    assert keys(storage) == {"other/keep.txt"}


def test_before_rejects_a_malformed_time() -> None:
    """A date-like argument that is not a valid time is an error, not a backup name."""
    storage = MemoryStorage()
    three_fulls_and_a_delta(storage)
    with pytest.raises(ConfigError, match="not a time") as caught:
        run(storage, DeleteRequest("before", None, "2026-13-45T00:00:00Z"))
    assert caught.value.exit_code == 2
    text = run(storage, DeleteRequest("before", None, "2026-11-01T01:30:00Z", start_time=True))
    assert "backups to delete: 2" in text


# -- the command line -----------------------------------------------------------------------


def test_cli_delete_dry_then_confirm(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`wal-g delete retain 2` prints the plan and exits 0; --confirm then deletes it."""
    storage = FileStorage(walg_env["WALG_FILE_PREFIX"])
    _a, _a1, b, c = three_fulls_and_a_delta(storage)
    assert main(["delete", "retain", "2"], environ=walg_env) == 0
    assert "backups to delete: 2" in capsys.readouterr().out
    assert len(list_backups(storage)) == 4
    assert main(["delete", "retain", "2", "--confirm"], environ=walg_env) == 0
    assert [x.name for x in list_backups(storage)] == [b, c]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["delete", "retain", "0"], 2, "must be at least 1"),
        (["delete", "retain", "two"], 2, "not a number"),
        (["delete", "retain", "-3"], 2, ""),
        (["delete", "target", "base_000000010000000000000099"], 1, "not found"),
        (["delete", "before", "base_000000010000000000000099"], 1, "not found"),
        (["delete", "retain", "4"], 1, "is a delta backup"),
        (["delete", "everything"], 1, "permanent backup"),
    ],
)
def test_cli_delete_errors(
    argv: list[str],
    code: int,
    message: str,
    walg_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad counts are usage errors; unknown names, a delta at the retain point and
    permanent backups blocking everything are one ERROR line and a HINT, exit 1."""
    storage = FileStorage(walg_env["WALG_FILE_PREFIX"])
    three_fulls_and_a_delta(storage)
    put_backup(storage, 40, at(5), permanent=True)
    before = keys(storage)
    assert main(argv, environ=walg_env) == code
    err = untimed(capsys.readouterr().err)
    assert message in err and "Traceback" not in err
    if code == 1:
        assert err.startswith("ERROR: ") and "\nHINT: " in err
    assert keys(storage) == before


def test_storage_failure_is_one_error_line(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage refusing a delete is an ERROR and HINT (re-run to finish), no traceback."""

    def refuse(self: FileStorage, keys: Sequence[str]) -> None:
        raise PermissionDenied(f"permission denied for {keys[0]!r} (injected)")

    storage = FileStorage(walg_env["WALG_FILE_PREFIX"])
    three_fulls_and_a_delta(storage)
    monkeypatch.setattr(FileStorage, "_delete", refuse)
    assert main(["delete", "retain", "1", "--confirm"], environ=walg_env) == 1
    err = untimed(capsys.readouterr().err)
    assert err.startswith("ERROR: permission denied for 'basebackups_005/base_")
    assert "run the same command again" in err and "Traceback" not in err


def test_wal_report_groups_by_timeline_and_kind_and_shows_gaps() -> None:
    """WAL to delete is listed per timeline and kind as runs of consecutive segments, so
    segments kept inside the range (a permanent backup's) show as a gap."""
    storage = MemoryStorage()
    put_wal(storage, 1, range(1, 12), size=10)
    put_wal(storage, 2, range(3, 5), size=10)
    storage.put_object("wal_005/000000010000000000000002.00000028.backup.lz4", b"b" * 3)
    storage.put_object("wal_005/000000010000000000000003.partial.lz4", b"p" * 4)
    put_backup(storage, 6, at(0), finish_seg=7, permanent=True)
    put_backup(storage, 10, at(1))
    text = run(storage, DeleteRequest("retain", None, 1))
    wal_lines = [line for line in text.splitlines() if line.startswith("  timeline")]
    assert wal_lines == [
        "  timeline 1 backup: 000000010000000000000002.00000028.backup  1 file (3 B)",
        "  timeline 1 partial: 000000010000000000000003.partial  1 file (4 B)",
        "  timeline 1 segment: 000000010000000000000001 .. 000000010000000000000005"
        "  5 files (50 B)",
        "  timeline 1 segment: 000000010000000000000008 .. 000000010000000000000009"
        "  2 files (20 B)",
        "  timeline 2 segment: 000000020000000000000003 .. 000000020000000000000004"
        "  2 files (20 B)",
    ]
    assert "WAL files to delete: 11 files (97 B), below segment 00000001000000000000000A" in text


@pytest.mark.parametrize(
    "request_",
    [DeleteRequest("garbage", confirm=True), DeleteRequest("retain", None, 1, confirm=True),
     DeleteRequest("before", None, "2030-01-01T00:00:00Z", confirm=True)],
    ids=["garbage", "retain", "before"],
)
def test_malformed_sentinel_stops_planning(request_: DeleteRequest) -> None:
    """A backup whose sentinel cannot be read keeps its WAL: delete refuses to plan and
    deletes nothing, instead of treating that WAL as older than every backup."""
    storage = MemoryStorage()
    put_wal(storage, 1, range(1, 25), size=100)
    damaged = put_backup(storage, 5, at(0))
    put_backup(storage, 10, at(1))
    storage.put_object(layout.sentinel_key(damaged), b"{truncated")
    before = keys(storage)
    with pytest.raises(RetentionError) as caught:
        run(storage, request_)
    assert layout.sentinel_key(damaged) in caught.value.msg
    assert keys(storage) == before


def test_everything_force_still_deletes_a_malformed_backup() -> None:
    """`delete everything FORCE` is not stopped by a malformed sentinel: it deletes all."""
    storage = MemoryStorage()
    put_wal(storage, 1, range(1, 5), size=100)
    damaged = put_backup(storage, 2, at(0))
    storage.put_object(layout.sentinel_key(damaged), b"{truncated")
    run(storage, DeleteRequest("everything", "FORCE", confirm=True))
    assert keys(storage) == set()
