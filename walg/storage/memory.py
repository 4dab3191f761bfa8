"""Storage in a dict, for unit tests of code that uses storage."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import BinaryIO

from walg.errors import ObjectExists, ObjectNotFound
from walg.storage.base import ObjectInfo, RetryPolicy, Storage

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Objects held in this process's memory (shared by its sub-folders)."""

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry)
        self._objects: dict[str, tuple[bytes, datetime]] = {}
        self._lock = threading.Lock()

    def _describe(self, root: str) -> str:
        return f"memory://{root}"

    def _put(self, key: str, source: BinaryIO) -> None:
        data = source.read()
        with self._lock:
            self._objects[key] = (bytes(data), datetime.now(UTC))

    def _put_new(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._objects:
                raise ObjectExists(f"object {key!r} exists already in {self._describe('')}")
            self._objects[key] = (bytes(data), datetime.now(UTC))

    def _get(self, key: str) -> tuple[bytes, datetime]:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(f"no object {key!r} in {self._describe('')}")
        return found

    def _read(self, key: str, offset: int) -> BinaryIO:
        data, _ = self._get(key)
        return io.BytesIO(data[offset:])

    def _stat(self, key: str) -> ObjectInfo:
        data, modified = self._get(key)
        return ObjectInfo(key, len(data), modified)

    def _list(self, prefix: str, after: str) -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted(
                (k, len(v[0]), v[1]) for k, v in self._objects.items() if k.startswith(prefix)
            )
        for key, size, modified in items:
            if key > after:
                yield ObjectInfo(key, size, modified)

    def _delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._objects.pop(key, None)
