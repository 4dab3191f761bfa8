"""File storage specifics: atomic writes, crash leftovers, pruning, clear errors."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from walg.errors import ObjectNotFound, StorageError
from walg.storage.file import TEMP_MARK, FileStorage


class Exploding(io.RawIOBase):
    """A stream that yields some bytes and then fails, like a reader killed mid-upload."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            return b"partial data"
        raise OSError("source went away")


def test_failed_put_leaves_nothing(tmp_path: Path) -> None:
    """A put whose source fails leaves no object and no temporary file behind."""
    store = FileStorage(str(tmp_path))
    store.put_object("wal_005/seg", b"old content")
    with pytest.raises(OSError, match="source went away"):
        store.put_object("wal_005/seg", Exploding())  # type: ignore[arg-type]
    assert store.read_bytes("wal_005/seg") == b"old content"
    assert sorted(os.listdir(tmp_path / "wal_005")) == ["seg"]


def test_crash_leftovers_are_invisible(tmp_path: Path) -> None:
    """A temporary file left by a crash is neither listed nor readable under its final name."""
    store = FileStorage(str(tmp_path))
    (tmp_path / "wal_005").mkdir()
    (tmp_path / "wal_005" / f"{TEMP_MARK}seg.abcd").write_bytes(b"half")
    assert list(store.list_objects()) == []
    with pytest.raises(ObjectNotFound):
        store.read_object("wal_005/seg")


def test_objects_are_plain_files(tmp_path: Path) -> None:
    """Keys map to paths below the directory, as WAL-G's file storage lays them out."""
    store = FileStorage(str(tmp_path)).sub_folder("basebackups_005")
    store.put_object("base_000000010000000000000002/metadata.json", b"{}")
    path = tmp_path / "basebackups_005" / "base_000000010000000000000002" / "metadata.json"
    assert path.read_bytes() == b"{}"


def test_delete_prunes_empty_folders(tmp_path: Path) -> None:
    """Deleting the last object of a folder removes the empty folders, not the root."""
    store = FileStorage(str(tmp_path))
    store.put_object("basebackups_005/base_1/tar_partitions/part_001.tar.lz4", b"x")
    store.put_object("basebackups_005/base_2/metadata.json", b"{}")
    store.delete_objects(["basebackups_005/base_1/tar_partitions/part_001.tar.lz4"])
    assert sorted(os.listdir(tmp_path / "basebackups_005")) == ["base_2"]
    store.delete_objects(["basebackups_005/base_2/metadata.json"])
    assert tmp_path.exists() and os.listdir(tmp_path) == []


def test_missing_root_lists_nothing(tmp_path: Path) -> None:
    """A storage directory that does not exist yet is an empty storage."""
    store = FileStorage(str(tmp_path / "not-yet"))
    assert list(store.list_objects()) == []
    store.put_object("a/b", b"c")
    assert store.read_bytes("a/b") == b"c"


def test_os_errors_become_storage_errors(tmp_path: Path) -> None:
    """A path blocked by a regular file gives a StorageError naming the key, not an OSError."""
    (tmp_path / "blocker").write_bytes(b"")
    store = FileStorage(str(tmp_path))
    with pytest.raises(StorageError, match="blocker/x"):
        store.put_object("blocker/x", b"data")
