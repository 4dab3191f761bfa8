"""The storage contract, written once and run on every backend (see conftest.py)."""

from __future__ import annotations

import hashlib
import io
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from servers.streams import PatternStream, pattern_digest

from walg.errors import EX_NOT_FOUND, ObjectExists, ObjectNotFound, StorageError
from walg.storage import Storage


def test_put_then_read_bytes(storage: Storage) -> None:
    """What is put is read back byte for byte, and stat reports its size and a recent mtime."""
    storage.put_object("wal_005/000000010000000000000001.lz4", b"segment bytes")
    assert storage.read_bytes("wal_005/000000010000000000000001.lz4") == b"segment bytes"
    info = storage.stat_object("wal_005/000000010000000000000001.lz4")
    assert info.name == "wal_005/000000010000000000000001.lz4"
    assert info.size == 13
    assert info.modified.tzinfo is not None
    assert abs(datetime.now(UTC) - info.modified) < timedelta(minutes=5)


def test_empty_object(storage: Storage) -> None:
    """A zero-byte object is an object: it exists, has size 0 and reads as b''."""
    storage.put_object("empty", b"")
    assert storage.exists("empty")
    assert storage.stat_object("empty").size == 0
    assert storage.read_bytes("empty") == b""


def test_put_from_streams(storage: Storage) -> None:
    """A seekable file object and a non-seekable stream are both stored whole."""
    storage.put_object("seekable", io.BytesIO(b"x" * 100_000))
    storage.put_object("stream", PatternStream(300_000))
    assert storage.read_bytes("seekable") == b"x" * 100_000
    assert hashlib.sha256(storage.read_bytes("stream")).hexdigest() == pattern_digest(300_000)


def test_overwrite_replaces(storage: Storage) -> None:
    """Putting an existing key replaces its content and size."""
    storage.put_object("k", b"first version, longer")
    storage.put_object("k", b"second")
    assert storage.read_bytes("k") == b"second"
    assert storage.stat_object("k").size == 6


def test_missing_object(storage: Storage) -> None:
    """A missing object raises ObjectNotFound (exit 74) on read and stat; exists is False."""
    with pytest.raises(ObjectNotFound) as info:
        storage.read_object("nope/missing.lz4")
    assert info.value.exit_code == EX_NOT_FOUND
    with pytest.raises(ObjectNotFound):
        storage.stat_object("nope/missing.lz4")
    assert not storage.exists("nope/missing.lz4")


def test_list_nested_prefixes(storage: Storage) -> None:
    """Listing is recursive, by key prefix, in key order; a folder prefix excludes siblings."""
    keys = ["a/1", "a/b/2", "a/b/c/3", "ab/4", "z"]
    for key in keys:
        storage.put_object(key, key.encode())
    assert [o.name for o in storage.list_objects()] == keys
    assert [o.name for o in storage.list_objects("a/")] == ["a/1", "a/b/2", "a/b/c/3"]
    assert [o.name for o in storage.list_objects("a")] == ["a/1", "a/b/2", "a/b/c/3", "ab/4"]
    assert [o.name for o in storage.list_objects("a/b/c/")] == ["a/b/c/3"]
    assert [o.size for o in storage.list_objects("a/b/")] == [5, 7]
    assert list(storage.list_objects("missing/")) == []
    listing = storage.list_folder("a")
    assert [o.name for o in listing.objects] == ["a/1"]
    assert listing.folders == ("b",)
    top = storage.list_folder()
    assert [o.name for o in top.objects] == ["z"] and top.folders == ("a", "ab")


def test_more_than_a_thousand_keys(storage: Storage) -> None:
    """Listing and deleting go past 1,000 keys (continuation, batching) and miss none."""
    keys = [f"many/{i:05d}" for i in range(1_100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: storage.put_object(k, b"."), keys))
    storage.put_object("other", b"kept")
    assert [o.name for o in storage.list_objects("many/")] == keys
    assert storage.delete_objects(keys) == 1_100
    assert list(storage.list_objects("many/")) == []
    assert storage.read_bytes("other") == b"kept"


def test_concurrent_uploads_and_reads(storage: Storage) -> None:
    """Several multi-chunk objects put at once from streams, while others are read, are all
    stored whole and apart (GCS: concurrent resumable sessions on one client)."""
    sizes = [(3 << 20) + n * 4099 for n in range(6)]
    storage.put_object("read/while", PatternStream(5 << 20, b"reader"))
    expected = hashlib.sha256(storage.read_bytes("read/while")).hexdigest()

    def put(n: int) -> None:
        storage.put_object(f"up/{n}", PatternStream(sizes[n], b"%d" % n))

    def read(_: int) -> str:
        return hashlib.sha256(storage.read_bytes("read/while")).hexdigest()

    with ThreadPoolExecutor(8) as pool:
        puts = [pool.submit(put, n) for n in range(len(sizes))]
        reads = [pool.submit(read, n) for n in range(3)]
        for future in puts:
            future.result()
        assert {future.result() for future in reads} == {expected}
    for n, size in enumerate(sizes):
        stored = hashlib.sha256(storage.read_bytes(f"up/{n}")).hexdigest()
        assert stored == pattern_digest(size, b"%d" % n), n
    assert [o.size for o in storage.list_objects("up/")] == sizes


def test_delete_is_idempotent(storage: Storage) -> None:
    """Deleting missing keys is not an error; deleting existing ones removes them."""
    storage.put_object("d/1", b"1")
    storage.put_object("d/2", b"2")
    storage.delete_objects(["d/1", "d/never-existed"])
    assert not storage.exists("d/1")
    assert storage.exists("d/2")
    storage.delete_objects(["d/1"])
    assert storage.delete_objects([]) == 0


def test_sub_folder_is_a_view(storage: Storage) -> None:
    """A sub-folder sees keys relative to it; the parent sees them under the path."""
    sub = storage.sub_folder("basebackups_005/base_000000010000000000000002")
    sub.put_object("tar_partitions/part_001.tar.lz4", b"part")
    assert storage.read_bytes(
        "basebackups_005/base_000000010000000000000002/tar_partitions/part_001.tar.lz4"
    ) == b"part"
    assert [o.name for o in sub.list_objects()] == ["tar_partitions/part_001.tar.lz4"]
    assert sub.stat_object("tar_partitions/part_001.tar.lz4").name == (
        "tar_partitions/part_001.tar.lz4"
    )
    assert storage.sub_folder("basebackups_005").list_folder().folders == (
        "base_000000010000000000000002",
    )


def test_copy_object(storage: Storage) -> None:
    """copy_object duplicates content under a new key."""
    storage.put_object("src", b"content")
    storage.copy_object("src", "dst/copy")
    assert storage.read_bytes("dst/copy") == b"content"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/"])
def test_invalid_keys_are_refused(storage: Storage, key: str) -> None:
    """Keys that are not clean relative paths are refused before reaching the backend."""
    with pytest.raises(StorageError, match="invalid object key"):
        storage.put_object(key, b"x")


def test_large_object_streams_without_being_held_in_memory(storage: Storage) -> None:
    """A 64 MiB object is put from a stream and read back in chunks, byte-exact, while this
    process never holds anything near the whole object (traced peak well under its size)."""
    size = 64 << 20
    tracemalloc.start()
    try:
        storage.put_object("big/object", PatternStream(size))
        digest = hashlib.sha256()
        with storage.read_object("big/object") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == pattern_digest(size)
    assert storage.stat_object("big/object").size == size
    if type(storage).__name__ != "MemoryStorage":  # the memory backend holds objects by design
        assert peak < size // 2, f"peak traced memory {peak >> 20} MiB"


def test_put_new_creates_only_if_absent(storage: Storage) -> None:
    """put_new creates a missing key (in a sub-folder too); on an existing key it raises
    ObjectExists and leaves the stored object as it was."""
    folder = storage.sub_folder("basebackups_005/base_000000010000000000000002")
    folder.put_new("claim", b"first")
    with pytest.raises(ObjectExists):
        folder.put_new("claim", b"second, longer")
    storage.put_object("plain", b"put by put_object")
    with pytest.raises(ObjectExists):
        storage.put_new("plain", b"other")
    assert folder.read_bytes("claim") == b"first"
    assert storage.read_bytes("plain") == b"put by put_object"
    names = [o.name for o in storage.list_objects()]
    assert names == ["basebackups_005/base_000000010000000000000002/claim", "plain"]


def test_put_new_concurrent_creators_one_wins(storage: Storage) -> None:
    """Of several writers creating the same key at the same moment, exactly one succeeds,
    every other gets ObjectExists, and the object holds the winner's bytes."""
    writers = 6
    for round_ in range(4):
        key = f"claims/key-{round_}"
        start = threading.Barrier(writers)

        def create(n: int, key: str = key, start: threading.Barrier = start) -> int | None:
            start.wait()
            try:
                storage.put_new(key, f"writer {n}".encode())
            except ObjectExists:
                return None
            return n

        with ThreadPoolExecutor(writers) as pool:
            results = list(pool.map(create, range(writers)))
        winners = [n for n in results if n is not None]
        assert len(winners) == 1, results
        assert storage.read_bytes(key) == f"writer {winners[0]}".encode()
