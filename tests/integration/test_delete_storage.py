"""``wal-g delete`` on real storage (a directory, S3 on moto, the GCS emulator): every mode dry
and confirmed over a synthetic tree of fulls, deltas, timelines and WAL; more than 1,000
WAL objects on S3 deleted completely."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers.gcs import gcs_emulator, make_gcs_storage
from servers.s3 import PREFIX, S3Maker, make_s3_storage, moto_server
from servers.synthetic_backups import at, put_backup, put_history, put_wal, wal_key

from walg.backup.catalog import list_backups
from walg.backup.deletion import DeleteRequest, delete
from walg.cli import main
from walg.errors import RetentionError
from walg.format import layout
from walg.postgres.wal import segment_name
from walg.storage.base import Storage
from walg.storage.file import FileStorage

__all__ = ["gcs_emulator", "make_gcs_storage", "make_s3_storage", "moto_server"]  # fixtures

LATER = datetime.now(UTC) + timedelta(hours=2)  # every object is past the grace period then


@dataclass(frozen=True)
class Tree:
    """Backups by role: ``old`` started first but its name (timeline 3) sorts last."""

    old: str
    a: str
    a1: str
    b: str
    b1: str
    c: str
    unfinished: str

    @property
    def all(self) -> list[str]:
        return [self.old, self.a, self.a1, self.b, self.b1, self.c]


def build(storage: Storage) -> Tree:
    """old (tl 3, seg 1), a (seg 2), a1 delta of a (seg 5), b (seg 10), b1 delta of b
    (seg 14), c (tl 2, seg 18), in that start order; an unfinished folder (seg 25); WAL
    tl1 0..17, tl2 16..25, tl3 0..2, and timeline histories 2 and 3."""
    put_wal(storage, 1, range(0, 18))
    put_wal(storage, 2, range(16, 26))
    put_wal(storage, 3, range(0, 3))
    put_history(storage, 2)
    put_history(storage, 3)
    old = put_backup(storage, 1, at(-1), timeline=3)
    a = put_backup(storage, 2, at(0))
    a1 = put_backup(storage, 5, at(1), delta_from=a)
    b = put_backup(storage, 10, at(2))
    b1 = put_backup(storage, 14, at(3), delta_from=b)
    c = put_backup(storage, 18, at(4), timeline=2)
    unfinished = put_backup(storage, 25, at(5), timeline=2, with_sentinel=False)
    return Tree(old, a, a1, b, b1, c, unfinished)


def wal_left(storage: Storage) -> set[str]:
    return {o.name for o in storage.list_objects(layout.WAL + "/")}


def all_wal() -> set[str]:
    keys = {wal_key(1, s) for s in range(0, 18)} | {wal_key(2, s) for s in range(16, 26)}
    keys |= {wal_key(3, s) for s in range(0, 3)}
    return keys | {"wal_005/00000002.history.lz4", "wal_005/00000003.history.lz4"}


def below(segment: int) -> set[str]:
    """Every WAL key of the tree whose segment number is below ``segment``."""
    return {k for k in all_wal() if "history" not in k and int(k[16:32], 16) < segment}


# mode, modifier, argument (a callable of the tree), deleted backups, deleted WAL, unfinished
Case = tuple[str, str | None, Callable[[Tree], object], Callable[[Tree], set[str]], set[str], bool]
CASES: dict[str, Case] = {
    "retain 3": ("retain", None, lambda t: 3, lambda t: {t.old, t.a, t.a1}, below(10), False),
    "retain FULL 1": (
        "retain", "FULL", lambda t: 1,
        lambda t: {t.old, t.a, t.a1, t.b, t.b1}, below(18), False,
    ),
    "retain FIND_FULL 2": (
        "retain", "FIND_FULL", lambda t: 2, lambda t: {t.old, t.a, t.a1}, below(10), False,
    ),
    "before FIND_FULL b1": (
        "before", "FIND_FULL", lambda t: t.b1, lambda t: {t.old, t.a, t.a1}, below(10), False,
    ),
    "before TIME": (
        "before", None, lambda t: "2026-11-01T01:30:00Z",
        lambda t: {t.old, t.a, t.a1}, below(10), False,
    ),
    "target b": ("target", None, lambda t: t.b, lambda t: {t.b, t.b1}, set(), False),
    "target FIND_FULL a1": (
        "target", "FIND_FULL", lambda t: t.a1, lambda t: {t.a, t.a1}, set(), False,
    ),
    "garbage": ("garbage", None, lambda t: None, lambda t: set(), below(1), True),
    "garbage ARCHIVES": ("garbage", "ARCHIVES", lambda t: None, lambda t: set(), below(1), False),
    "garbage BACKUPS": ("garbage", "BACKUPS", lambda t: None, lambda t: set(), set(), True),
    "everything FORCE": (
        "everything", "FORCE", lambda t: None, lambda t: set(t.all), all_wal(), True,
    ),
}  # fmt: skip


@pytest.fixture(params=["file", "s3", "gcs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An empty storage: a directory, or a fresh bucket on the moto server or the GCS
    emulator."""
    if request.param == "file":
        return FileStorage(str(tmp_path / "store"))
    maker: Callable[[], Storage] = request.getfixturevalue(f"make_{request.param}_storage")
    return maker()


@pytest.mark.parametrize("case", list(CASES))
def test_each_mode_dry_then_confirmed(storage: Storage, case: str) -> None:
    """Dry, nothing changes and the output lists exactly the backups to delete; confirmed,
    exactly those backups, that WAL and (garbage) the unfinished folder are gone."""
    mode, modifier, argument, doomed_of, doomed_wal, drops_unfinished = CASES[case]
    tree = build(storage)
    doomed = doomed_of(tree)
    # the tree's times are synthetic start times: compare with them (--use-sentinel-time)
    request = DeleteRequest(mode, modifier, argument(tree), start_time=True)  # type: ignore[arg-type]
    snapshot = {o.name for o in storage.list_objects()}
    out = io.StringIO()
    delete(storage, request, out=out, now=LATER)
    assert {o.name for o in storage.list_objects()} == snapshot
    lines = out.getvalue().splitlines()
    listed = set()
    if doomed:
        start = lines.index(f"backups to delete: {len(doomed)}") + 1
        listed = {line.split()[0] for line in lines[start : start + len(doomed)]}
    assert listed == doomed
    assert (f"  {tree.unfinished}  " in out.getvalue()) == drops_unfinished

    confirmed = DeleteRequest(mode, modifier, argument(tree), True, start_time=True)  # type: ignore[arg-type]
    delete(storage, confirmed, out=io.StringIO(), now=LATER)
    assert {b.name for b in list_backups(storage)} == set(tree.all) - doomed
    assert wal_left(storage) == all_wal() - doomed_wal
    unfinished_left = any(
        o.name.startswith(f"{layout.BASEBACKUPS}/{tree.unfinished}/")
        for o in storage.list_objects(layout.BASEBACKUPS + "/")
    )
    assert unfinished_left != drops_unfinished
    for name in doomed:  # nothing of a deleted backup is left behind
        assert not list(storage.list_objects(f"{layout.BASEBACKUPS}/{name}/"))


@pytest.mark.parametrize(
    ("mode", "modifier", "argument"),
    [("retain", None, 3), ("before", None, "2026-11-01T00:30:00Z"), ("everything", None, None)],
)
def test_refusals_change_nothing(
    storage: Storage, mode: str, modifier: str | None, argument: object
) -> None:
    """retain at a delta, before a delta, and everything with a permanent backup refuse
    with a RetentionError and leave storage as it was."""
    build(storage)
    put_backup(storage, 30, at(9), permanent=True, timeline=2)
    snapshot = {o.name for o in storage.list_objects()}
    with pytest.raises(RetentionError):
        request = DeleteRequest(mode, modifier, argument, True, start_time=True)  # type: ignore[arg-type]
        delete(storage, request, out=io.StringIO())
    assert {o.name for o in storage.list_objects()} == snapshot


def test_more_than_a_thousand_wal_objects_on_s3(
    make_s3_storage: S3Maker, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wal-g delete retain 1 --confirm` on S3 deletes all 1,500 WAL objects below the kept
    backup (listing and deleting page through more than 1,000 keys) and keeps the rest."""
    storage = make_s3_storage()
    bucket = storage.options.bucket
    names = [segment_name(1, s) for s in range(0, 1520)]

    def put(name: str) -> None:
        storage.put_object(f"wal_005/{name}.lz4", b"w")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, names))
    put_backup(storage, 100, at(0))
    kept = put_backup(storage, 1500, at(1))
    env = {
        "WALG_S3_PREFIX": f"s3://{bucket}/{PREFIX}",
        "AWS_ENDPOINT": make_s3_storage.endpoint,
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    assert main(["delete", "retain", "1", "--confirm"], environ=env) == 0
    out = capsys.readouterr().out
    assert "WAL files to delete: 1500 files" in out and "deleted 1500 WAL files" in out
    raw = make_s3_storage.client.get_paginator("list_objects_v2")
    left = [
        item["Key"]
        for page in raw.paginate(Bucket=bucket, Prefix=f"{PREFIX}/wal_005/")
        for item in page.get("Contents", [])
    ]
    assert sorted(left) == [f"{PREFIX}/wal_005/{n}.lz4" for n in names[1500:]]
    assert [b.name for b in list_backups(storage)] == [kept]
