"""What the storage base class derives once for every backend: retries, resuming, batching."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pytest

from walg.errors import ObjectExists, PermissionDenied, StorageError, StorageUnavailable
from walg.storage import ObjectInfo, RetryPolicy
from walg.storage.base import DELETE_BATCH
from walg.storage.memory import MemoryStorage


def policy(retries: int, sleeps: list[float] | None = None) -> RetryPolicy:
    record = sleeps if sleeps is not None else []
    return RetryPolicy(max_retries=retries, base_delay=0.5, max_delay=2.0, sleep=record.append)


class Flaky(MemoryStorage):
    """Memory storage whose operations fail transiently a set number of times."""

    def __init__(self, retry: RetryPolicy, failures: int = 0, cut_reads_at: int = 0) -> None:
        super().__init__(retry)
        self.failures = failures
        self.cut_reads_at = cut_reads_at  # read streams fail after this many bytes
        self.cuts_left = 0
        self.calls = 0
        self.deleted_batches: list[int] = []
        self.read_offsets: list[int] = []
        self.list_afters: list[str] = []

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("503 Slow Down")

    def _put(self, key: str, source: BinaryIO) -> None:
        self._maybe_fail()
        super()._put(key, source)

    def _read(self, key: str, offset: int) -> BinaryIO:
        self.read_offsets.append(offset)
        stream = super()._read(key, offset)
        if self.cuts_left > 0:
            self.cuts_left -= 1
            return _CutStream(stream, self.cut_reads_at)
        return stream

    def _list(self, prefix: str, after: str) -> Iterator[ObjectInfo]:
        self.list_afters.append(after)
        for n, info in enumerate(super()._list(prefix, after)):
            if n == 2 and self.failures > 0:
                self.failures -= 1
                raise StorageUnavailable("connection reset during listing")
            yield info

    def _delete(self, keys: Sequence[str]) -> None:
        self.deleted_batches.append(len(keys))
        super()._delete(keys)


class _CutStream(io.RawIOBase):
    def __init__(self, inner: BinaryIO, limit: int) -> None:
        super().__init__()
        self.inner, self.left = inner, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise StorageUnavailable("connection reset by peer")
        want = self.left if size < 0 else min(size, self.left)
        data = self.inner.read(want)
        self.left -= len(data)
        return data


def test_transient_failures_are_retried_with_capped_backoff() -> None:
    """A put that fails transiently k times within the budget succeeds after k sleeps."""
    sleeps: list[float] = []
    store = Flaky(policy(5, sleeps), failures=4)
    store.put_object("k", b"v")
    assert store.read_bytes("k") == b"v"
    assert len(sleeps) == 4
    assert all(0 <= s <= 2.0 for s in sleeps)


def test_retry_budget_exhausted_raises() -> None:
    """More transient failures than the budget surface as StorageUnavailable, nothing stored."""
    store = Flaky(policy(2), failures=3)
    with pytest.raises(StorageUnavailable):
        store.put_object("k", b"v")
    assert store.calls == 3
    assert not store.exists("k")


def test_permanent_errors_are_not_retried() -> None:
    """A non-retryable error is raised at once."""
    calls: list[int] = []

    def denied() -> None:
        calls.append(1)
        raise PermissionDenied("no")

    with pytest.raises(PermissionDenied):
        policy(5).call("op", denied)
    assert calls == [1]


def test_backoff_is_capped_and_jittered() -> None:
    """Delays stay within [0, min(max_delay, base * 2**attempt)]."""
    p = RetryPolicy(base_delay=0.1, max_delay=1.0)
    for attempt in range(12):
        assert 0 <= p.delay(attempt) <= min(1.0, 0.1 * 2**attempt)


def test_non_seekable_stream_is_not_retried() -> None:
    """A stream that cannot be rewound is not re-sent after a failure (that would lose data)."""
    store = Flaky(policy(5), failures=1)

    class OneWay(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return b""

    with pytest.raises(StorageUnavailable):
        store.put_object("k", OneWay())  # type: ignore[arg-type]
    assert store.calls == 1


def test_seekable_stream_is_rewound_on_retry() -> None:
    """A seekable stream is re-sent from where it started, so the object is whole."""
    store = Flaky(policy(5), failures=2)
    source = io.BytesIO(b"headerPAYLOAD")
    source.seek(6)
    store.put_object("k", source)
    assert store.read_bytes("k") == b"PAYLOAD"


def test_interrupted_read_resumes_at_its_offset() -> None:
    """A read cut by a transient error reopens at the byte it reached; content is exact."""
    store = Flaky(policy(5), cut_reads_at=1000)
    data = bytes(range(256)) * 40
    store.put_object("k", data)
    store.cuts_left = 3
    with store.read_object("k") as stream:
        got = b"".join(iter(lambda: stream.read(300), b""))
    assert got == data
    assert store.read_offsets[-4:] == [0, 1000, 2000, 3000]


def test_interrupted_read_gives_up_after_budget() -> None:
    """A read that keeps failing without progress raises once the budget is spent."""
    store = Flaky(policy(2), cut_reads_at=0)
    store.put_object("k", b"x" * 100)
    store.cuts_left = 10
    with pytest.raises(StorageUnavailable), store.read_object("k") as stream:
        stream.read()
    assert store.read_offsets[-3:] == [0, 0, 0]


def test_budget_is_per_stall_not_per_download() -> None:
    """Many cuts, each after some progress, do not exhaust the budget of a long read."""
    store = Flaky(policy(2), cut_reads_at=100)
    data = bytes(range(256)) * 40
    store.put_object("k", data)
    store.cuts_left = 50
    with store.read_object("k") as stream:
        assert stream.read() == data


def test_cut_listing_resumes_after_last_key() -> None:
    """A listing cut by a transient error resumes after the last key yielded, no repeats."""
    store = Flaky(policy(5))
    keys = [f"wal/{i:03d}" for i in range(7)]
    for key in keys:
        store.put_object(key, b".")
    store.failures = 2
    assert [o.name for o in store.list_objects("wal/")] == keys
    assert store.list_afters == ["", "wal/001", "wal/003"]


def test_deletes_are_batched() -> None:
    """delete_objects sends at most DELETE_BATCH keys per request."""
    store = Flaky(policy(1))
    keys = [f"k{i}" for i in range(2 * DELETE_BATCH + 5)]
    for key in keys:
        store.put_object(key, b"")
    assert store.delete_objects(iter(keys)) == len(keys)
    assert store.deleted_batches == [DELETE_BATCH, DELETE_BATCH, 5]
    assert list(store.list_objects()) == []


def test_storage_error_is_a_walg_error_with_hint() -> None:
    """Invalid keys raise a StorageError carrying a hint."""
    with pytest.raises(StorageError) as info:
        MemoryStorage().put_object("../etc/passwd", b"")
    assert "relative paths" in info.value.hint


class LostAnswer(MemoryStorage):
    """Memory storage whose first create-if-absent is answered with a transient error after
    the storage stored either the request's bytes or, when ``interloper`` is set, another
    writer's (the answer was lost on the way back)."""

    def __init__(self, retry: RetryPolicy, interloper: bytes | None = None) -> None:
        super().__init__(retry)
        self.lost = 1
        self.interloper = interloper

    def _put_new(self, key: str, data: bytes) -> None:
        if not self.lost:
            super()._put_new(key, data)
            return
        self.lost -= 1
        super()._put_new(key, self.interloper if self.interloper is not None else data)
        raise StorageUnavailable("connection reset after the request was sent")


def test_put_new_retry_finding_its_own_bytes_succeeds() -> None:
    """A create-if-absent retried after a lost answer finds its own bytes and succeeds;
    finding another writer's bytes it raises ObjectExists."""
    storage = LostAnswer(policy(3))
    storage.put_new("claim", b"token-1")
    assert storage.read_bytes("claim") == b"token-1"
    raced = LostAnswer(policy(3), interloper=b"token-of-another-writer")
    with pytest.raises(ObjectExists):
        raced.put_new("claim", b"token-2")
    assert raced.read_bytes("claim") == b"token-of-another-writer"
