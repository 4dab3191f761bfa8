"""Streaming uploads to S3: one PutObject for small objects, parallel multipart for large.

The stream is cut into parts read one after another. When the whole stream fits in the
first part it is sent with one PutObject. Otherwise a multipart upload is started and the
parts are sent by a pool of ``concurrency`` threads while the next part is read; at most
``concurrency + 1`` parts are in memory at once (one being read, ``concurrency`` being
sent). Each part is retried on its own with the storage's retry policy. The upload is
completed only when every part succeeded, and aborted on any failure, including
KeyboardInterrupt, so a reader never sees a partial object.

Part sizes: ``part_size`` (default 20 MiB) for parts 1-1000, then doubled every 1000 parts,
capped at S3's 5 GiB. The stream's length is not known in advance (it comes out of a
compressor), so the size grows as parts accumulate: 10,000 parts then hold ~15 TiB, more
than S3's 5 TiB object limit, while objects under ~19.5 GiB use 20 MiB parts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO

from walg.errors import StorageError
from walg.logs import get_logger
from walg.sizes import CHUNK
from walg.storage.base import RetryPolicy
from walg.storage.s3_errors import Where, translated

__all__ = [
    "DEFAULT_PART_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "MultipartUpload",
    "PartSource",
]

MIN_PART_SIZE = 5 << 20
"""S3's smallest part (except the last)."""
DEFAULT_PART_SIZE = 20 << 20
"""A 16 MiB WAL segment, even incompressible and encrypted, fits one PutObject."""
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
GROW_EVERY = 1000
"""The part size doubles after every this many parts."""

_log = get_logger("walg.storage")


class _Cancelled(Exception):
    """Another part failed: stop retrying this one (never escapes the upload)."""


def read_exactly(source: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes of ``source`` (fewer only at its end) in one growing buffer.

    Read in slices of at most 1 MiB: a raw stream's ``read(n)`` allocates ``n`` bytes
    whatever it returns, and one buffer (handed to botocore as is) avoids a final join.
    """
    buffer = bytearray()
    while len(buffer) < size:
        data = source.read(min(size - len(buffer), CHUNK))
        if not data:
            break
        buffer += data
    return buffer


class PartSource:
    """A stream cut into numbered parts, growing in size as described in the module doc."""

    def __init__(self, source: BinaryIO, part_size: int = DEFAULT_PART_SIZE) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part size {part_size} outside [{MIN_PART_SIZE}, {MAX_PART_SIZE}]")
        self._source = source
        self._part_size = part_size
        self._ahead: list[bytearray] = []
        self.number = 0  # of the last part handed out

    def size_of(self, number: int) -> int:
        """The size of part ``number`` (from 1) unless it is the last."""
        return min(MAX_PART_SIZE, self._part_size << ((number - 1) // GROW_EVERY))

    def fits_one_part(self) -> bool:
        """Read ahead up to two parts; True when the whole stream is in the first."""
        first = read_exactly(self._source, self.size_of(1))
        self._ahead.append(first)
        if len(first) < self.size_of(1):
            return True
        second = read_exactly(self._source, self.size_of(2))
        if not second:
            return True
        self._ahead.append(second)
        return False

    @property
    def buffered(self) -> int:
        """Parts read ahead and not handed out yet."""
        return len(self._ahead)

    def next_part(self) -> bytearray:
        """The next part; b"" at the end of the stream (except for an empty first part)."""
        self.number += 1
        if self._ahead:
            return self._ahead.pop(0)
        data = read_exactly(self._source, self.size_of(self.number))
        if data and self.number > MAX_PARTS:
            raise StorageError(f"object larger than S3's limit of {MAX_PARTS} parts")
        return data


class MultipartUpload:
    """One multipart upload of ``key``: parts in parallel, then complete, or abort."""

    def __init__(
        self,
        client: Any,
        where: Where,
        key: str,
        extra: dict[str, str],
        concurrency: int,
        retry: RetryPolicy,
    ) -> None:
        self._client = client
        self._where = where
        self._key = key
        self._extra = extra
        self._concurrency = max(1, concurrency)
        self._retry = retry
        self._checksum = getattr(client.meta.config, "request_checksum_calculation", None)
        self._upload_id = ""
        self._cancel = threading.Event()  # set when a part failed or the upload is given up

    def run(self, parts: PartSource) -> None:
        """Upload every part of ``parts``; complete the upload, or abort it and raise."""
        self._upload_id = self._call("start multipart upload", self._create)
        try:
            done = self._send_all(parts)
            self._call("complete multipart upload", lambda: self._complete(done))
        except BaseException:
            self._cancel.set()
            self._abort()
            raise

    def _call(
        self, what: str, operation: Callable[[], Any], cancel: threading.Event | None = None
    ) -> Any:
        def attempt() -> Any:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            with translated(what, self._key, self._where):
                return operation()

        return self._retry.call(f"{what} {self._key}", attempt)

    def _create(self) -> str:
        args = dict(self._extra)
        if self._checksum == "when_supported":  # as boto3's transfer manager does
            args["ChecksumAlgorithm"] = "CRC32"
        answer = self._client.create_multipart_upload(
            Bucket=self._where.bucket, Key=self._key, **args
        )
        return str(answer["UploadId"])

    def _send_all(self, parts: PartSource) -> list[dict[str, Any]]:
        """Read and send every part; the sent parts' descriptions in part-number order."""
        futures: list[Future[dict[str, Any]]] = []
        pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="walg-s3-part")
        try:
            self._feed(parts, pool, futures)
        except BaseException:
            self._cancel.set()
            for future in futures:
                future.cancel()
            raise
        finally:
            pool.shutdown(wait=True)
        return _results(futures)

    def _feed(
        self, parts: PartSource, pool: ThreadPoolExecutor, futures: list[Future[dict[str, Any]]]
    ) -> None:
        """Submit the parts as they are read, while a slot is free (concurrency + 1)."""
        slots = threading.Semaphore(self._concurrency + 1)
        for _ in range(parts.buffered):
            slots.acquire()  # the parts already read ahead hold slots
        while not self._cancel.is_set():
            if not parts.buffered:
                slots.acquire()  # a failing part releases its slot too: this never hangs
                if self._cancel.is_set():
                    return
            held = [parts.next_part()]  # the sender empties it before freeing the slot
            if not held[0] and parts.number > 1:
                return
            futures.append(pool.submit(self._send, parts.number, held, slots.release))
            del held

    def _send(
        self, number: int, held: list[bytearray], release: Callable[[], None]
    ) -> dict[str, Any]:
        """Upload part ``number`` (in a pool thread), retrying it; stop all on failure.

        The part's bytes are dropped before its slot is released, so the reader never
        holds more than ``concurrency + 1`` parts."""
        args: dict[str, Any] = {}
        if self._checksum == "when_supported":
            args["ChecksumAlgorithm"] = "CRC32"

        def attempt() -> dict[str, Any]:
            answer: dict[str, Any] = self._client.upload_part(
                Bucket=self._where.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=held[0],
                **args,
            )
            return answer

        try:
            answer = self._call(f"upload part {number}", attempt, self._cancel)
        except BaseException:
            self._cancel.set()
            raise
        finally:
            held.clear()
            release()
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if "ChecksumCRC32" in answer:
            part["ChecksumCRC32"] = answer["ChecksumCRC32"]
        return part

    def _complete(self, done: list[dict[str, Any]]) -> None:
        self._client.complete_multipart_upload(
            Bucket=self._where.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": sorted(done, key=lambda p: p["PartNumber"])},
        )

    def _abort(self) -> None:
        """Abort the upload; a failure to abort is logged, not raised over the cause."""
        try:
            self._call(
                "abort multipart upload",
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._where.bucket, Key=self._key, UploadId=self._upload_id
                ),
            )
        except Exception as err:
            _log.warning(
                "multipart upload not aborted; a bucket lifecycle rule will remove it",
                object=self._where.url(self._key),
                upload_id=self._upload_id,
                error=str(err),
            )


def _results(futures: list[Future[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The parts' results once all are done; else the first real failure (not a part
    stopped because another failed)."""
    wait(futures)
    failures: list[BaseException] = []
    for future in futures:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            failures.append(error)
    failures.sort(key=lambda error: isinstance(error, _Cancelled))  # stable: real ones first
    if failures:
        raise failures[0]
    return [future.result() for future in futures]
