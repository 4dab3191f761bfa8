"""The one storage interface: five primitives per backend, everything else derived here.

A :class:`Storage` is a folder of objects named by keys: ``/``-separated relative paths
such as ``wal_005/000000010000000000000001.lz4``. A backend implements five primitives on
keys that this base class has already checked and joined to the folder's root:

``_put(key, source)``      store everything ``source.read()`` returns, atomically
``_read(key, offset)``     a stream of the object's bytes from ``offset``
``_stat(key)``             size and modification time
``_list(prefix, after)``   every object whose key starts with ``prefix``, in key order,
                           starting after the key ``after`` (to resume a cut listing)
``_delete(keys)``          delete the objects that exist among ``keys``

Optional capabilities: ``_list_versions(prefix)`` and ``_delete_version(key, version_id)``
for storages that keep object versions (versioned S3 buckets, GCS generations); the defaults
raise :class:`VersionsUnsupported`.

And one required capability: ``_put_new(key, data)`` stores ``data`` only if no object is under
``key``, atomically (of concurrent creators exactly one wins; the others get
:class:`ObjectExists`): an exclusive create on files, ``If-None-Match: *`` on S3,
``ifGenerationMatch=0`` on GCS. It is how a writer claims a name.

Each translates its SDK's errors into :class:`ObjectNotFound`, :class:`PermissionDenied`,
:class:`StorageUnavailable` (retryable) or :class:`StorageError`. Retries of transient
failures, resuming an interrupted read, key checks, batching and sub-folders live once, here.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from walg.errors import ObjectExists, ObjectNotFound, StorageError, VersionsUnsupported
from walg.sizes import CHUNK
from walg.storage.retry import RetryPolicy, Tries

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "DELETE_BATCH",
    "Listing",
    "ObjectInfo",
    "ObjectVersion",
    "ReadStream",
    "RetryPolicy",
    "Storage",
    "check_key",
    "iter_chunks",
]


DELETE_BATCH = 1000
"""Keys per delete request (the S3 limit)."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object: its key relative to the storage folder, its size and its mtime (UTC)."""

    name: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of an object (or a delete marker, size 0) in a versioned store."""

    name: str
    size: int
    modified: datetime
    version_id: str
    latest: bool
    delete_marker: bool = False


@dataclass(frozen=True)
class Listing:
    """One level of a folder: the objects directly in it and the names of its sub-folders."""

    objects: tuple[ObjectInfo, ...]
    folders: tuple[str, ...]


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid relative object key, else raise StorageError."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(
            f"invalid object key {key!r}",
            hint="keys are relative paths like wal_005/000000010000000000000001.lz4",
        )
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key-like path that may end with '/'."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class Storage(ABC):
    """A folder of objects in some storage. See the module docstring for the contract."""

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self._root = ""  # path of this folder inside the backend, "" or ending with "/"

    # -- what a backend implements --------------------------------------------------------

    @abstractmethod
    def _put(self, key: str, source: BinaryIO) -> None:
        """Store all of ``source`` under ``key``; a reader never sees a partial object."""

    @abstractmethod
    def _put_new(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` only if no object is there (checked and written as
        one step); otherwise raise ObjectExists and change nothing."""

    @abstractmethod
    def _read(self, key: str, offset: int) -> BinaryIO:
        """Open the object from byte ``offset``; raise ObjectNotFound if it is missing."""

    @abstractmethod
    def _stat(self, key: str) -> ObjectInfo:
        """Size and mtime of the object (name = full key); ObjectNotFound if missing."""

    @abstractmethod
    def _list(self, prefix: str, after: str) -> Iterator[ObjectInfo]:
        """Objects whose full key starts with ``prefix``, in key order, names being full
        keys; only keys greater than ``after`` (when it is not empty)."""

    @abstractmethod
    def _delete(self, keys: Sequence[str]) -> None:
        """Delete those of ``keys`` (at most DELETE_BATCH) that exist."""

    def _list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Every version and delete marker under ``prefix`` (names are full keys), each
        key's versions newest first, then its delete markers newest first."""
        raise VersionsUnsupported(f"{self.url} keeps no object versions")

    def _delete_version(self, key: str, version_id: str) -> None:
        """Delete one version (or delete marker) of ``key`` for good."""
        raise VersionsUnsupported(f"{self.url} keeps no object versions")

    @property
    def url(self) -> str:
        """Where this folder is, for messages (no credentials)."""
        return self._describe(self._root)

    def _describe(self, root: str) -> str:
        return f"{type(self).__name__}:{root}"

    # -- the public interface -------------------------------------------------------------

    def check_present(self) -> None:
        """Raise StorageError if the storage itself is missing, so that a caller about to
        say "no such object" can tell a missing object from a missing archive. Cloud
        backends already report a missing bucket on every call; a folder overrides this."""
        return

    def put_object(self, key: str, data: bytes | BinaryIO) -> None:
        """Store ``data`` under ``key``, replacing what was there. A stream is read to its
        end; it is retried from its start after a transient error only if it is seekable."""
        full = self._full(key)
        if isinstance(data, bytes | bytearray | memoryview):
            self.retry.call(f"put {key}", lambda: self._put(full, io.BytesIO(data)))
            return
        if not _seekable(data):
            self._put(full, data)
            return
        start = data.tell()

        def attempt() -> None:
            data.seek(start)
            self._put(full, data)

        self.retry.call(f"put {key}", attempt)

    def put_new(self, key: str, data: bytes) -> None:
        """Create ``key`` holding ``data`` if no object is under it, else raise ObjectExists.
        Of several writers creating the same key at once, exactly one succeeds. For small
        objects held in memory (claims, sentinels).

        A retry after a transient failure that finds ``data`` already there counts as
        done (the failed attempt stored it), so a writer that must know it won writes
        content no other writer would (a unique token)."""
        full = self._full(key)
        payload = bytes(data)
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            try:
                self._put_new(full, payload)
            except ObjectExists:
                if tries == 1 or not self._holds(full, payload):
                    raise

        self.retry.call(f"create {key}", attempt)

    def _holds(self, full: str, data: bytes) -> bool:
        """Whether the object ``full`` exists and holds exactly ``data``."""
        try:
            with self._read(full, 0) as stream:
                return bool(stream.read() == data)
        except ObjectNotFound:
            return False

    def read_object(self, key: str) -> BinaryIO:
        """A stream of the object's bytes; a read cut by a transient error resumes where it
        stopped. Raises ObjectNotFound if there is no such object."""
        full = self._full(key)
        stream = self.retry.call(f"read {key}", lambda: self._read(full, 0))
        return cast(BinaryIO, _ResumingReader(self, full, stream))

    def read_bytes(self, key: str) -> bytes:
        """The whole object in memory (for small objects: sentinels, metadata)."""
        with self.read_object(key) as stream:
            return stream.read()

    def stat_object(self, key: str) -> ObjectInfo:
        """Size and mtime of ``key``; ObjectNotFound if missing."""
        full = self._full(key)
        info = self.retry.call(f"stat {key}", lambda: self._stat(full))
        return ObjectInfo(key, info.size, info.modified)

    def exists(self, key: str) -> bool:
        """Whether an object ``key`` exists."""
        try:
            self.stat_object(key)
        except ObjectNotFound:
            return False
        return True

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under this folder whose key starts with ``prefix``, recursively,
        in key order. Streams listings of any size; a listing cut by a transient error
        resumes after the last key it yielded."""
        full = self._root + _check_prefix(prefix)
        skip = len(self._root)
        last = ""
        tries = self.retry.tries()
        while True:
            try:
                for info in self._list(full, last):
                    last = info.name
                    tries.progress()
                    yield ObjectInfo(info.name[skip:], info.size, info.modified)
                return
            except StorageError as err:
                tries.failed(err)  # raises, or waits before the listing resumes after last

    def list_folder(self, folder: str = "") -> Listing:
        """The objects directly in ``folder`` and its sub-folder names (one level)."""
        prefix = folder.rstrip("/") + "/" if folder else ""
        objects, folders = [], set()
        for info in self.list_objects(prefix):
            rest = info.name[len(prefix) :]
            if "/" in rest:
                folders.add(rest.split("/", 1)[0])
            else:
                objects.append(info)
        objects.sort(key=lambda o: o.name)
        return Listing(tuple(objects), tuple(sorted(folders)))

    def delete_objects(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (missing ones are fine) in batches; return how many were asked."""
        batch: list[str] = []
        count = 0
        for key in keys:
            batch.append(self._full(key))
            if len(batch) == DELETE_BATCH:
                count += self._delete_batch(batch)
                batch = []
        if batch:
            count += self._delete_batch(batch)
        return count

    def _delete_batch(self, batch: list[str]) -> int:
        self.retry.call(f"delete {len(batch)} objects", lambda: self._delete(batch))
        return len(batch)

    def list_versions(self, prefix: str = "") -> list[ObjectVersion]:
        """Every stored version and delete marker of the objects whose key starts with
        ``prefix``, by key, newest first. VersionsUnsupported where there are none."""
        full, skip = self._root + _check_prefix(prefix), len(self._root)
        found = self.retry.call(f"list versions {prefix}", lambda: list(self._list_versions(full)))
        found.sort(key=lambda v: v.name)  # stable: the backend lists each key newest first
        return [dataclasses.replace(v, name=v.name[skip:]) for v in found]

    def delete_version(self, key: str, version_id: str) -> None:
        """Delete version ``version_id`` of ``key`` for good (not a new delete marker)."""
        full = self._full(key)
        what = f"delete {key} version {version_id}"
        self.retry.call(what, lambda: self._delete_version(full, version_id))

    def copy_object(self, source: str, target: str) -> None:
        """Copy an object within this storage (streamed, never held whole in memory)."""
        with self.read_object(source) as stream:
            self.put_object(target, stream)

    def sub_folder(self, path: str) -> Storage:
        """The same storage seen from ``path`` (relative to this folder)."""
        view = copy.copy(self)
        view._root = self._root + check_key(path.strip("/")) + "/"
        return view

    def _full(self, key: str) -> str:
        return self._root + check_key(key)


def iter_chunks(source: BinaryIO, size: int) -> Iterator[memoryview | bytes]:
    """The bytes of ``source`` in chunks of at most ``size``, reusing one buffer when the
    stream supports ``readinto`` (each chunk is valid until the next one is taken)."""
    buffer = memoryview(bytearray(size))
    try:
        n = source.readinto(buffer)  # type: ignore[attr-defined]
    except (AttributeError, NotImplementedError, io.UnsupportedOperation):
        while data := source.read(size):
            yield data
        return
    while n:
        yield buffer[:n]
        n = source.readinto(buffer)  # type: ignore[attr-defined]


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


class ReadStream(io.RawIOBase):
    """A readable stream defined by ``read`` alone; ``readinto``/``readall`` derive from it.
    Backends wrap their SDK's response bodies in one, translating errors in ``read``."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        raise NotImplementedError

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ResumingReader(ReadStream):
    """A read stream that reopens at its position after a transient error. The retry
    budget applies to consecutive failures without progress, so a long download survives
    occasional resets."""

    def __init__(self, storage: Storage, key: str, stream: BinaryIO) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._stream = stream
        self._position = 0
        self._tries = Tries(storage.retry)  # the budget starts at a first failure

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        while True:
            try:
                data = self._stream.read(size)
            except StorageError as err:
                self._reopen(err)
                continue
            if data:
                self._position += len(data)
                self._tries.progress()  # a later cut gets a fresh count and budget
            return data

    def _reopen(self, err: StorageError) -> None:
        self._tries.failed(err)  # raises, or waits before the read resumes
        self._stream.close()
        while True:
            try:
                self._stream = self._storage._read(self._key, self._position)
                return
            except StorageError as again:
                self._tries.failed(again)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()
