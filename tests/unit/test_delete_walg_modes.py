"""WAL-G's delete semantics (issue 17): which time a TIME is compared with (the sentinel's
modification time, backup-list's time; the recorded start time with --use-sentinel-time),
``retain N --after NAME|TIME``, ``target --target-user-data`` and ``garbage
--without-backup-check``."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from servers.synthetic_backups import at, put_backup, put_wal

from walg.backup.deletion import DeleteRequest, delete
from walg.backup.retention import BackupRef, Inventory, Plan, plan_before, plan_garbage, plan_retain
from walg.errors import BackupNotFound, ConfigError, NoBackupsFound, RetentionError
from walg.format import layout
from walg.postgres.wal import segment_name
from walg.storage.memory import MemoryStorage

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def ref(seg: int, hour: float, *, base: BackupRef | None = None, done: float = 0.5,
        permanent: bool = False) -> BackupRef:
    """A backup of timeline 1 starting in segment ``seg`` at hour ``hour`` whose sentinel
    was written ``done`` hours later."""
    start = segment_name(1, seg)
    name = layout.backup_name(start, base.start_wal if base else None)
    return BackupRef(
        name=name,
        start_time=T0 + timedelta(hours=hour),
        start_wal=start,
        finish_wal=start,
        delta_from=base.name if base else None,
        delta_full_name=(base.delta_full_name or base.name) if base else None,
        permanent=permanent,
        modified=T0 + timedelta(hours=hour + done),
    )  # fmt: skip


def inv(backups: list[BackupRef], segs: range = range(0)) -> Inventory:
    keys = [f"wal_005/{segment_name(1, s)}.lz4" for s in segs]
    return Inventory(backups=backups, wal_keys=keys, now=NOW)


def deleted(plan: Plan) -> set[str]:
    return {d.name for d in plan.delete}


def listed(when: datetime) -> datetime:
    """``when`` as backup-list prints it (RFC 3339 to the second) and read back."""
    return datetime.strptime(when.strftime("%Y-%m-%dT%H:%M:%SZ"), "%Y-%m-%dT%H:%M:%S%z")


def four() -> list[BackupRef]:
    """full, delta, full, delta: WAL-G's delete_before_time_find_full_test history."""
    a = ref(2, 0)
    a1 = ref(4, 1, base=a)
    b = ref(6, 2)
    b1 = ref(8, 3, base=b)
    return [a, a1, b, b1]


def test_before_find_full_with_the_time_backup_list_shows() -> None:
    """before FIND_FULL <the last backup's backup-list time> keeps that delta's full backup
    and deletes the older chain (WAL-G: the sentinel's modification time is compared)."""
    a, a1, b, b1 = four()
    assert b1.modified is not None
    when = listed(b1.modified + timedelta(microseconds=123456))
    assert deleted(plan_before(inv([a, a1, b, b1]), when, find_full=True)) == {a.name, a1.name}
    with pytest.raises(RetentionError, match="delta"):
        plan_before(inv([a, a1, b, b1]), when)


def test_use_sentinel_time_compares_the_start_time() -> None:
    """With --use-sentinel-time the same time is after every start: nothing is deleted;
    the start time of the last backup selects it."""
    a, a1, b, b1 = four()
    assert b1.modified is not None
    plan = plan_before(inv([a, a1, b, b1]), b1.modified, True, start_time=True)
    assert plan.empty and "started at or after" in plan.notes[0]
    plan = plan_before(inv([a, a1, b, b1]), b1.start_time, True, start_time=True)
    assert deleted(plan) == {a.name, a1.name}


def test_a_time_between_start_and_sentinel_differs_by_basis() -> None:
    """A time after b's start but before its sentinel was written: by modification time b
    is at or after it (kept); by start time only the backups after it are."""
    backups = [ref(2, 0), ref(6, 2), ref(10, 4)]
    when = backups[1].start_time + timedelta(minutes=10)
    assert deleted(plan_before(inv(backups), when)) == {backups[0].name}
    by_start = plan_before(inv(backups), when, start_time=True)
    assert deleted(by_start) == {backups[0].name, backups[1].name}


def test_retain_after_time_keeps_the_newest_and_everything_after() -> None:
    """WAL-G's delete_retain_after_test: four full backups, a time taken after the second,
    retain 1 --after it deletes the first two."""
    backups = [ref(2 + 4 * i, i) for i in range(4)]
    assert backups[1].modified is not None
    when = listed(backups[1].modified + timedelta(seconds=1))
    plan = plan_retain(inv(backups), 1, None, when)
    assert deleted(plan) == {backups[0].name, backups[1].name}
    # an older point than the retained count wins: retain 1 --after the first keeps all
    assert plan_retain(inv(backups), 1, None, backups[0].name).empty
    # a later point than the retained count changes nothing: retain 3 --after the last
    assert deleted(plan_retain(inv(backups), 3, None, backups[3].name)) == {backups[0].name}


def test_retain_after_with_modifiers_and_few_backups() -> None:
    """FULL/FIND_FULL --after keep from the first full backup at or after the point; with
    fewer backups than COUNT nothing is deleted; an unknown name is an error."""
    a, a1, b, b1 = four()
    c = ref(10, 4)
    history = [a, a1, b, b1, c]
    assert deleted(plan_retain(inv(history), 1, "FULL", a1.name)) == {a.name, a1.name}
    assert deleted(plan_retain(inv(history), 1, "FIND_FULL", a1.start_time, True)) == {
        a.name, a1.name,
    }  # fmt: skip
    assert plan_retain(inv(history), 9, None, c.name).empty
    with pytest.raises(BackupNotFound):
        plan_retain(inv(history), 1, None, "base_000000010000000000000077")
    with pytest.raises(RetentionError, match="delta"):
        plan_retain(inv(history), 1, None, a1.name)


def test_garbage_without_backup_check() -> None:
    """Without backups, --without-backup-check deletes the WAL that garbage keeps; with
    only a permanent backup, all WAL but its range goes."""
    segs = range(0, 12)
    kept = plan_garbage(inv([], segs))
    assert kept.wal == ()
    gone = plan_garbage(inv([], segs), without_backup_check=True)
    assert len(gone.wal) == 12
    perm = ref(5, 0, permanent=True)
    assert len(plan_garbage(inv([perm], segs)).wal) == 5
    plan = plan_garbage(inv([perm], segs), without_backup_check=True)
    assert f"wal_005/{segment_name(1, 5)}.lz4" not in plan.wal and len(plan.wal) == 11
    normal = ref(8, 1)
    assert plan_garbage(inv([perm, normal], segs), without_backup_check=True).wal == (
        plan_garbage(inv([perm, normal], segs)).wal
    )


def _set_user_data(storage: MemoryStorage, name: str, data: object) -> None:
    key = layout.metadata_key(name)
    doc = json.loads(storage.read_bytes(key))
    doc["user_data"] = data
    storage.put_object(key, json.dumps(doc).encode())


def test_target_by_user_data() -> None:
    """delete target --target-user-data deletes the one backup with that UserData (and its
    deltas); a name as well, or no match, is refused."""
    storage = MemoryStorage()
    put_wal(storage, 1, range(1, 12))
    a = put_backup(storage, 2, at(0))
    a1 = put_backup(storage, 4, at(1), delta_from=a)
    b = put_backup(storage, 8, at(2))
    _set_user_data(storage, a, {"x": [3], "y": 4})
    request = DeleteRequest("target", user_data='{"y": 4, "x": [3.0]}', confirm=True)
    delete(storage, request, out=io.StringIO())
    left = {o.name for o in storage.list_objects(layout.BASEBACKUPS + "/")}
    assert layout.sentinel_key(b) in left
    assert not {layout.sentinel_key(a), layout.sentinel_key(a1)} & left
    with pytest.raises(NoBackupsFound):
        delete(storage, DeleteRequest("target", user_data="nobody"), out=io.StringIO())
    with pytest.raises(ConfigError, match="both"):
        delete(storage, DeleteRequest("target", None, b, user_data="x"), out=io.StringIO())


def test_before_a_future_time_is_refused() -> None:
    """As WAL-G: `delete before` a time in the future is an error."""
    storage = MemoryStorage()
    put_backup(storage, 2, at(0))
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ConfigError, match="future"):
        delete(storage, DeleteRequest("before", None, future), out=io.StringIO())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["delete", "retain", "FULL", "2", "--after", "2026-11-01T00:00:00Z"],
         {"modifier": "FULL", "count": 2, "after": "2026-11-01T00:00:00Z"}),
        (["delete", "--confirm", "retain", "-a", "base_1", "5"], {"after": "base_1", "count": 5}),
        (["delete", "target", "FIND_FULL", "base_1"],
         {"modifier": "FIND_FULL", "target": "base_1"}),
        (["delete", "target", "--target-user-data", '{"x": 1}'],
         {"modifier": None, "target": None, "target_user_data": '{"x": 1}'}),
        (["delete", "target", "FIND_FULL", "--target-user-data", "x"],
         {"modifier": "FIND_FULL", "target": None}),
        (["delete", "garbage", "--without-backup-check", "ARCHIVES"],
         {"modifier": "ARCHIVES", "without_backup_check": True}),
        (["delete", "--use-sentinel-time", "before", "FIND_FULL", "2026-11-01T00:00:00Z"],
         {"use_sentinel_time": True, "modifier": "FIND_FULL"}),
    ],
)  # fmt: skip
def test_wal_g_delete_flags_parse(argv: list[str], expected: dict[str, object]) -> None:
    """WAL-G's delete flags parse, before or after the mode's words."""
    from walg.cli_parser import build_parser

    args = vars(build_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_delete_target_needs_a_backup(capsys: pytest.CaptureFixture[str]) -> None:
    """``delete target`` with neither NAME nor --target-user-data is a usage error."""
    from walg.cli import main

    env = {"WALG_FILE_PREFIX": "/nonexistent/walg-test-store"}
    assert main(["delete", "target"], environ=env) == 2
    assert "NAME, or --target-user-data" in capsys.readouterr().err
    assert main(["delete", "target", "base_1", "base_2"], environ=env) == 2
