"""The backup catalog: which backups exist, their order, LATEST, and lookup errors."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from structlog.testing import capture_logs

from walg.backup import catalog
from walg.backup.catalog import (
    LATEST,
    BackupNotFound,
    NoBackupsFound,
    find_backup,
    list_backups,
    read_files_metadata,
    read_metadata,
)
from walg.backup.delta import check_base, choose_base
from walg.errors import EX_GENERAL, IntegrityError, ObjectNotFound, PermissionDenied
from walg.format import layout
from walg.format.meta import FileDescription, FilesMetadata, Sentinel
from walg.storage.base import Storage
from walg.storage.file import FileStorage
from walg.storage.memory import MemoryStorage

FULL_1 = "base_000000010000000000000002"
DELTA_1 = "base_000000010000000000000005_D_000000010000000000000002"
# An older cluster's backup on timeline 2: after a pg_upgrade the new cluster starts again
# on timeline 1, so the newer backup's name sorts *before* this older one's.
OLD_TL2 = "base_000000020000000A00000010"

# A sentinel exactly as WAL-G writes it (nanosecond times, keys we do not model).
WALG_SENTINEL: dict[str, Any] = {
    "LSN": 33554472,
    "Timeline": 1,
    "PgVersion": 150004,
    "FinishLSN": 33554744,
    "SystemIdentifier": 7311470011216977934,
    "UncompressedSize": 23456789,
    "CompressedSize": 3456789,
    "DataCatalogSize": 23000000,
    "Spec": None,
    "Version": 2,
    "StartTime": "2024-05-06T07:08:09.123456789Z",
    "FinishTime": "2024-05-06T07:09:10.5Z",
    "DateFmt": "%Y-%m-%dT%H:%M:%S.%fZ",
    "Hostname": "db1",
    "DataDir": "/var/lib/postgresql/15/main",
    "IsPermanent": False,
}


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=UTC)


def sentinel(start: datetime | None, *, delta_from: str | None = None, **extra: Any) -> Sentinel:
    """A small sentinel that started at ``start`` (None: an old one without times)."""
    fields: dict[str, Any] = {
        "start_lsn": 0x2000028,
        "finish_lsn": 0x2000138,
        "timeline": 1,
        "pg_version": 150004,
        "start_time": start,
        "finish_time": start,
        **extra,
    }
    if delta_from:
        fields.update(delta_from=delta_from, delta_full_name=delta_from, delta_count=1)
        fields.update(delta_lsn=0x2000028)
    return Sentinel(**fields)


def put_json(storage: Storage, key: str, doc: Any) -> None:
    storage.put_object(key, json.dumps(doc).encode())


def put_backup(storage: Storage, name: str, doc: Sentinel | dict[str, Any]) -> None:
    """Store a sentinel (the commit point) for ``name``, plus a part like a real backup."""
    storage.put_object(layout.part_key(name, "part_001.tar.lz4"), b"tar")
    content = doc.to_json() if isinstance(doc, Sentinel) else doc
    put_json(storage, layout.sentinel_key(name), content)


@pytest.fixture(params=["memory", "file"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An empty storage of each local kind."""
    if request.param == "memory":
        return MemoryStorage()
    return FileStorage(str(tmp_path / "storage"))


def names(backups: list[catalog.BackupInfo]) -> list[str]:
    return [b.name for b in backups]


# -- listing --------------------------------------------------------------------------------


def test_list_orders_by_start_time_not_name(storage: Storage) -> None:
    """Backups come oldest first by recorded start time, even when names sort the other way."""
    put_backup(storage, FULL_1, sentinel(at(20)))
    put_backup(storage, OLD_TL2, sentinel(at(1), timeline=2))
    assert sorted([FULL_1, OLD_TL2]) == [FULL_1, OLD_TL2]  # by name, the newer one is first
    assert names(list_backups(storage)) == [OLD_TL2, FULL_1]


def test_list_breaks_start_time_ties_by_name(storage: Storage) -> None:
    """Backups with the same start time are ordered by name, so the order is stable."""
    put_backup(storage, OLD_TL2, sentinel(at(3)))
    put_backup(storage, FULL_1, sentinel(at(3)))
    assert names(list_backups(storage)) == [FULL_1, OLD_TL2]


def test_list_reads_walg_sentinel_shape(storage: Storage) -> None:
    """A sentinel in WAL-G's own JSON shape is listed with its fields and derived values."""
    put_backup(storage, FULL_1, WALG_SENTINEL)
    [backup] = list_backups(storage)
    assert backup.name == FULL_1
    assert backup.wal_file == "000000010000000000000002"
    assert backup.start_time == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert backup.sentinel.system_identifier == 7311470011216977934
    assert not backup.is_delta
    assert backup.modified.tzinfo is not None


def test_list_marks_deltas(storage: Storage) -> None:
    """A delta's WAL file is the part before _D_, and it says what it is based on."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    put_backup(storage, DELTA_1, sentinel(at(2), delta_from=FULL_1))
    full, delta = list_backups(storage)
    assert (full.is_delta, delta.is_delta) == (False, True)
    assert delta.wal_file == "000000010000000000000005"
    assert delta.sentinel.delta_from == FULL_1


def test_list_ignores_backups_without_sentinel(storage: Storage) -> None:
    """An unfinished backup's objects, and sentinel-like keys in sub-folders, are no backups."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    unfinished = "base_000000010000000000000009"
    storage.put_object(layout.part_key(unfinished, "part_001.tar.lz4"), b"tar")
    put_json(storage, layout.metadata_key(unfinished), {"start_time": "2024-05-09T00:00:00Z"})
    nested = f"{layout.BASEBACKUPS}/{unfinished}/x{layout.SENTINEL_SUFFIX}"
    put_json(storage, nested, sentinel(at(9)).to_json())
    put_json(storage, f"{layout.WAL}/y{layout.SENTINEL_SUFFIX}", sentinel(at(9)).to_json())
    assert names(list_backups(storage)) == [FULL_1]


def test_list_of_empty_storage_is_empty(storage: Storage) -> None:
    """An empty storage lists no backups (not an error)."""
    assert list_backups(storage) == []


def test_malformed_sentinel_is_skipped_with_a_warning(storage: Storage) -> None:
    """A corrupt sentinel does not hide the other backups; a warning names it."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    storage.put_object(layout.sentinel_key(OLD_TL2), b"{not json")
    with capture_logs() as logs:
        listed = list_backups(storage)
    assert names(listed) == [FULL_1]
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["backup"] == OLD_TL2
    assert layout.sentinel_key(OLD_TL2) in warning["error"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", json.dumps({"LSN": "x", "FinishLSN": 1}).encode(), b"\xff\xfe"],
)
def test_malformed_sentinel_is_an_error_by_name(storage: Storage, content: bytes) -> None:
    """Asking for a corrupt backup by name (or listing strictly) names the sentinel object."""
    storage.put_object(layout.sentinel_key(FULL_1), content)
    with pytest.raises(IntegrityError, match=layout.sentinel_key(FULL_1)):
        find_backup(storage, FULL_1)
    with pytest.raises(IntegrityError, match=layout.sentinel_key(FULL_1)):
        list_backups(storage, strict=True)


def test_old_sentinel_without_times_uses_metadata_then_modified() -> None:
    """Without StartTime, metadata.json's start_time orders the backup, else the object mtime."""
    storage = MemoryStorage()
    old_walg = {k: v for k, v in WALG_SENTINEL.items() if k not in ("StartTime", "FinishTime")}
    put_backup(storage, OLD_TL2, old_walg)  # written first: the older mtime
    put_backup(storage, FULL_1, sentinel(None))  # our writer stores unknown times as the epoch
    put_json(storage, layout.metadata_key(OLD_TL2), {"start_time": "2030-01-01T00:00:00Z"})
    listed = list_backups(storage)
    assert names(listed) == [FULL_1, OLD_TL2]
    assert listed[1].start_time == datetime(2030, 1, 1, tzinfo=UTC)
    assert listed[0].start_time == listed[0].modified


def test_with_metadata_reads_permanence_from_metadata(storage: Storage) -> None:
    """WAL-G's backup-mark rewrites only metadata.json, so it decides is_permanent."""
    put_backup(storage, FULL_1, sentinel(at(1), is_permanent=False))
    put_backup(storage, OLD_TL2, sentinel(at(2), is_permanent=True))
    put_json(storage, layout.metadata_key(FULL_1), {"is_permanent": True, "hostname": "db9"})
    plain = list_backups(storage)
    assert [b.metadata for b in plain] == [None, None]
    first, second = list_backups(storage, with_metadata=True)
    assert (first.is_permanent, first.details.hostname) == (True, "db9")
    assert (second.metadata, second.is_permanent, second.details.hostname) == (None, True, "")


def test_malformed_metadata_is_ignored_in_lists(storage: Storage) -> None:
    """A corrupt metadata.json is warned about; the sentinel's facts are shown instead."""
    put_backup(storage, FULL_1, sentinel(at(1), hostname="db1"))
    storage.put_object(layout.metadata_key(FULL_1), b"[]")
    with capture_logs() as logs:
        [backup] = list_backups(storage, with_metadata=True)
    assert backup.metadata is None and backup.details.hostname == "db1"
    assert any(e["log_level"] == "warning" and e["backup"] == FULL_1 for e in logs)


class SlowStorage(MemoryStorage):
    """Memory storage whose reads take a while and record how many overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def _read(self, key: str, offset: int) -> BinaryIO:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.02)
        with self.guard:
            self.active -= 1
        return super()._read(key, offset)


def test_sentinels_are_read_in_parallel() -> None:
    """Sentinels are fetched by several threads at once, and the result keeps its order."""
    storage = SlowStorage()
    expected = []
    for i in range(12):
        name = f"base_0000000100000000000000{i + 16:02X}"
        put_backup(storage, name, sentinel(at(1 + i)))
        expected.append(name)
    assert names(list_backups(storage, workers=4)) == expected
    assert storage.peak > 1


class VanishingStorage(MemoryStorage):
    """Memory storage where one sentinel is listed but gone when read (a concurrent delete)."""

    gone = layout.sentinel_key(OLD_TL2)

    def _read(self, key: str, offset: int) -> BinaryIO:
        if key == self.gone:
            raise ObjectNotFound(f"no object {key!r}")
        return super()._read(key, offset)


def test_sentinel_deleted_while_listing_is_skipped() -> None:
    """A backup deleted between the listing and the read is simply not there."""
    storage = VanishingStorage()
    put_backup(storage, FULL_1, sentinel(at(1)))
    put_backup(storage, OLD_TL2, sentinel(at(2)))
    assert names(list_backups(storage)) == [FULL_1]


# -- finding --------------------------------------------------------------------------------


def test_latest_is_newest_by_start_time(storage: Storage) -> None:
    """LATEST is the backup that started last, not the last name in sort order."""
    put_backup(storage, FULL_1, sentinel(at(20)))
    put_backup(storage, OLD_TL2, sentinel(at(1)))
    assert find_backup(storage, LATEST).name == FULL_1
    put_backup(storage, DELTA_1, sentinel(at(21), delta_from=FULL_1))
    latest = find_backup(storage, LATEST)
    assert latest.name == DELTA_1 and latest.is_delta


def test_latest_skips_older_malformed_sentinels(tmp_path: Path) -> None:
    """A corrupt sentinel written before the newest readable one is warned about and
    skipped: LATEST is the newest readable backup."""
    storage = FileStorage(str(tmp_path / "storage"))
    storage.put_object(layout.sentinel_key(OLD_TL2), b"")
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / "storage" / layout.sentinel_key(OLD_TL2), (an_hour_ago, an_hour_ago))
    put_backup(storage, FULL_1, sentinel(at(1)))
    with capture_logs() as logs:
        assert find_backup(storage, LATEST).name == FULL_1
    assert any(e.get("backup") == OLD_TL2 for e in logs)


def test_latest_refuses_when_a_newer_sentinel_is_malformed(storage: Storage) -> None:
    """A corrupt sentinel written after the newest readable one may be the real latest
    backup: LATEST fails naming it rather than quietly restoring an older backup."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    storage.put_object(layout.sentinel_key(DELTA_1), b"{not json")
    with pytest.raises(IntegrityError) as caught:
        find_backup(storage, LATEST)
    assert layout.sentinel_key(DELTA_1) in caught.value.msg
    assert "explicitly" in caught.value.hint
    assert find_backup(storage, FULL_1).name == FULL_1  # by name it still works


def test_find_by_name(storage: Storage) -> None:
    """A backup is found by its exact name, with its sentinel's modification time."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    put_backup(storage, DELTA_1, sentinel(at(2), delta_from=FULL_1))
    found = find_backup(storage, FULL_1)
    assert found.name == FULL_1 and found.sentinel.start_time == at(1)
    assert found.modified == storage.stat_object(layout.sentinel_key(FULL_1)).modified


def test_unknown_name_lists_newest_available(storage: Storage) -> None:
    """An unknown name is a user error (exit 1) naming the ten newest backups and the rest."""
    made = []
    for i in range(12):
        name = f"base_0000000100000000000000{i + 16:02X}"
        put_backup(storage, name, sentinel(at(1 + i)))
        made.append(name)
    with pytest.raises(BackupNotFound) as caught:
        find_backup(storage, "base_000000010000000000000099")
    err = caught.value
    assert err.exit_code == EX_GENERAL
    assert "'base_000000010000000000000099' not found in" in err.msg
    assert storage.url in err.msg
    shown = ", ".join(reversed(made[2:]))
    assert err.msg.endswith(f"available: {shown}, and 2 more")
    assert "wal-g backup-list" in err.hint


def test_unknown_name_with_few_backups_lists_all(storage: Storage) -> None:
    """With few backups, every one is listed, newest first, with no "more" tail."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    put_backup(storage, OLD_TL2, sentinel(at(2)))
    with pytest.raises(BackupNotFound, match=f"available: {OLD_TL2}, {FULL_1}$"):
        find_backup(storage, "latest")


@pytest.mark.parametrize("name", ["../etc", "", "base_X/../../y", ".."])
def test_impossible_names_are_unknown_backups(storage: Storage, name: str) -> None:
    """Names that cannot be a sentinel's are reported as unknown backups, not key errors."""
    put_backup(storage, FULL_1, sentinel(at(1)))
    with pytest.raises(BackupNotFound, match=FULL_1):
        find_backup(storage, name)


@pytest.mark.parametrize("wanted", [LATEST, FULL_1])
def test_empty_storage_names_the_storage(storage: Storage, wanted: str) -> None:
    """With no backups at all, the error names the storage and suggests checking the prefix."""
    with pytest.raises(NoBackupsFound) as caught:
        find_backup(storage, wanted)
    assert storage.url in caught.value.msg
    assert "WALG_S3_PREFIX" in caught.value.hint
    assert isinstance(caught.value, BackupNotFound)


def test_storage_errors_are_not_hidden() -> None:
    """A failing storage raises its own error instead of "no backups"."""

    class Broken(MemoryStorage):
        def _list(self, prefix: str, after: str) -> Iterator[Any]:
            raise PermissionDenied("access denied to the bucket")

    with pytest.raises(PermissionDenied, match="access denied"):
        find_backup(Broken(), LATEST)


# -- documents ------------------------------------------------------------------------------


def test_read_metadata_of_walg_shape(storage: Storage) -> None:
    """metadata.json as WAL-G writes it parses; Go's zero time means unknown."""
    put_json(
        storage,
        layout.metadata_key(FULL_1),
        {
            "start_time": "2024-05-06T07:08:09.123456789Z",
            "finish_time": "0001-01-01T00:00:00Z",
            "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ",
            "hostname": "db1",
            "data_dir": "/pg",
            "pg_version": 150004,
            "start_lsn": 33554472,
            "finish_lsn": 33554744,
            "is_permanent": True,
            "system_identifier": None,
            "uncompressed_size": 10,
            "compressed_size": 5,
            "user_data": {"a": 1},
        },
    )
    meta = read_metadata(storage, FULL_1)
    assert meta is not None
    assert meta.start_time == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert meta.finish_time == datetime(1970, 1, 1, tzinfo=UTC)
    assert (meta.pg_version, meta.start_lsn, meta.is_permanent) == (150004, 33554472, True)
    assert (meta.system_identifier, meta.user_data) == (None, {"a": 1})


def test_missing_documents_are_none(storage: Storage) -> None:
    """A backup without metadata.json or files_metadata.json reads as None."""
    assert read_metadata(storage, FULL_1) is None
    assert read_files_metadata(storage, FULL_1) is None


@pytest.mark.parametrize("content", [b"nope", b"null", b'{"start_time": "yesterday"}'])
def test_malformed_metadata_names_the_key(storage: Storage, content: bytes) -> None:
    """A corrupt metadata.json is an IntegrityError naming its key."""
    storage.put_object(layout.metadata_key(FULL_1), content)
    with pytest.raises(IntegrityError, match=layout.metadata_key(FULL_1)):
        read_metadata(storage, FULL_1)


def test_read_files_metadata(storage: Storage) -> None:
    """files_metadata.json round-trips; a corrupt one names its key."""
    files = FilesMetadata(
        {"/base/1/2": FileDescription(at(1), is_incremented=True)}, {"part_001.tar": ["/base/1/2"]}
    )
    put_json(storage, layout.files_metadata_key(FULL_1), files.to_json())
    assert read_files_metadata(storage, FULL_1) == files
    storage.put_object(layout.files_metadata_key(DELTA_1), b'{"Files": 3}')
    with pytest.raises(IntegrityError, match=layout.files_metadata_key(DELTA_1)):
        read_files_metadata(storage, DELTA_1)


def test_files_kept_in_an_old_walg_sentinel_are_read(storage: Storage) -> None:
    """Old WAL-G versions kept ``Files`` in the sentinel, with no files_metadata.json."""
    doc = sentinel(at(1)).to_json()
    doc["Files"] = {"/base/1/2": {"IsIncremented": True, "IsSkipped": False, "MTime": ""}}
    put_backup(storage, FULL_1, doc)
    files = read_files_metadata(storage, FULL_1)
    assert files is not None and files.files["/base/1/2"].is_incremented
    put_backup(storage, OLD_TL2, sentinel(at(2)))
    assert read_files_metadata(storage, OLD_TL2) is None


def test_file_storage_modified_is_the_sentinel_mtime(tmp_path: Path) -> None:
    """On file storage a backup's modified time is its sentinel file's mtime."""
    storage = FileStorage(str(tmp_path))
    put_backup(storage, FULL_1, sentinel(at(1)))
    path = tmp_path / layout.sentinel_key(FULL_1)
    os.utime(path, (1700000000, 1700000000))
    [backup] = list_backups(storage)
    assert backup.modified == datetime.fromtimestamp(1700000000, UTC)


def test_walg_sentinel_without_timeline_takes_it_from_the_name() -> None:
    """A WAL-G sentinel has no Timeline key: the timeline is read from the backup's name
    (base_00000002...), so a delta on timeline 2 after a promotion is not refused."""
    name = "base_000000020000000000000004"
    walg_shaped = {  # the keys WAL-G's BackupSentinelDtoV2 writes, and no Timeline
        "LSN": 0x4000028,
        "FinishLSN": 0x4000138,
        "PgVersion": 150000,
        "SystemIdentifier": 7,
        "StartTime": "2026-01-01T00:00:00.000000Z",
        "FinishTime": "2026-01-01T00:00:01.000000Z",
        "IsPermanent": False,
    }
    storage = MemoryStorage()
    storage.put_object(layout.sentinel_key(name), json.dumps(walg_shaped).encode())
    base = choose_base(list_backups(storage), max_steps=1, origin="LATEST")
    assert base is not None and base.backup.sentinel.timeline == 2
    # Timeline 2 began at 0/3000000, before this base: a delta on it is sound.
    check_base(base, 7, 0x5000028, timeline=2, history={1: 0x3000000})
    assert Sentinel.from_json(walg_shaped).timeline == 1  # no name: WAL-G's default
