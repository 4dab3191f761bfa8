"""Resumable uploads to GCS, driven here so that retries follow walg's RetryPolicy.

The protocol (https://cloud.google.com/storage/docs/performing-resumable-uploads): a POST
opens a session; each chunk is a PUT with ``Content-Range: bytes a-b/*``, answered with 308
and ``Range: bytes=0-n`` (what the server has persisted); the last chunk names the total,
``bytes a-b/total`` (or ``bytes */total`` when nothing is left), and creates the object.
Until that last request succeeds no object exists under the name, so a failed upload never
leaves a partial object; on failure the session is cancelled (best effort).

Only one chunk is in memory at a time. After a transient failure the upload asks the server
how much it has (``Content-Range: bytes */*``) and resends from there, out of the chunk it
still holds; each chunk gets the storage's retry budget. The object the server reports at
the end is checked against the size and CRC32C computed while sending.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any, BinaryIO

from walg.errors import IntegrityError, StorageError, StorageUnavailable
from walg.logs import get_logger
from walg.storage.base import RetryPolicy
from walg.storage.gcs_http import sdk_errors, status_error, translated

__all__ = ["CHUNK_UNIT", "ChunkReader", "ResumableUpload", "read_up_to", "response_detail"]

CHUNK_UNIT = 256 * 1024
"""Every chunk but the last must be a multiple of this (a GCS rule)."""

OCTET_STREAM = "application/octet-stream"
_RANGE = re.compile(r"bytes=0-(\d+)$")
_CANCEL_TIMEOUT = (5.0, 5.0)
_CRC_PIECE = 1 << 20
_log = get_logger("walg.storage")


def read_up_to(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes of ``source``: fewer only at its end."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        data = source.read(left)
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def response_detail(response: Any) -> str:
    """The error message of a JSON API error response, if it has one."""
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return ""


class ChunkReader:
    """``head``, then the rest of ``source``, in chunks of ``size`` bytes (the last shorter,
    possibly empty); keeps the CRC32C of everything it handed out.

    Every chunk is a view of one buffer, valid until the next call: an upload holds one
    chunk in memory, and requests sends the view without copying it.
    """

    def __init__(self, head: bytes, source: BinaryIO, size: int) -> None:
        import google_crc32c

        self._head = memoryview(head)
        self._source = source
        self._buffer = memoryview(bytearray(size))
        self._crc = google_crc32c.Checksum()
        self.offset = 0

    def next(self) -> tuple[int, memoryview, bool]:
        """The next chunk: its offset in the object, its bytes, and whether it is the last."""
        size = len(self._buffer)
        filled = min(len(self._head), size)
        self._buffer[:filled] = self._head[:filled]
        self._head = self._head[filled:] if filled < len(self._head) else memoryview(b"")
        filled += fill(self._source, self._buffer[filled:])
        data = self._buffer[:filled]
        start = self.offset
        self.offset += filled
        for piece in range(0, filled, _CRC_PIECE):  # the C extension takes bytes only
            self._crc.update(bytes(data[piece : piece + _CRC_PIECE]))
        return start, data, filled < size

    def crc32c(self) -> str:
        """The CRC32C so far, base64-encoded as GCS reports it."""
        return base64.b64encode(self._crc.digest()).decode("ascii")


def fill(source: BinaryIO, buffer: memoryview) -> int:
    """Read from ``source`` into ``buffer`` until it is full or the source ends."""
    readinto = getattr(source, "readinto", None)
    filled = 0
    while filled < len(buffer):
        if readinto is not None:
            count = readinto(buffer[filled:])
        else:
            data = source.read(len(buffer) - filled)
            count = len(data)
            buffer[filled : filled + count] = data
        if not count:
            break
        filled += count
    return filled


class ResumableUpload:
    """One object, uploaded through resumable sessions with walg's retries.

    ``stat`` returns the stored object's size and CRC32C (size -1 when missing), used when
    the answer to the final chunk was lost; ``discard`` deletes an object that arrived
    corrupt.
    """

    def __init__(
        self,
        session: Any,
        start_url: str,
        url: str,
        retry: RetryPolicy,
        timeout: tuple[float, float],
        stat: Callable[[], tuple[int, str | None]],
        discard: Callable[[], None],
    ) -> None:
        self._session = session
        self._start_url = start_url
        self._url = url
        self._retry = retry
        self._timeout = timeout
        self._stat = stat
        self._discard = discard
        self._session_url: str | None = None
        self._confirmed = 0  # bytes the server has confirmed; the next chunk starts here
        self._final_sent = False
        self._recovering = False
        self._result: dict[str, Any] | None = None

    def run(self, chunks: ChunkReader) -> None:
        """Send every chunk of ``chunks``; on any failure cancel the session and re-raise."""
        try:
            while self._result is None:
                start, data, last = chunks.next()
                self._send(start, data, last)
        except BaseException:
            self._cancel()
            raise
        self._verify(chunks.offset, chunks.crc32c())

    def _send(self, start: int, data: memoryview, last: bool) -> None:
        """Send one chunk until the server confirmed it (or, for the last, the object)."""
        end = start + len(data)
        failures = 0
        while self._result is None and (last or self._confirmed < end):
            try:
                self._step(start, data, last)
            except StorageError as err:
                if not err.retryable or failures >= self._retry.max_retries:
                    raise
                _log.warning(
                    "storage retry", op=f"upload {self._url}", attempt=failures + 1, error=err.msg
                )
                self._retry.sleep(self._retry.delay(failures))
                failures += 1
                self._recovering = True

    def _step(self, start: int, data: memoryview, last: bool) -> None:
        if self._session_url is None:
            self._session_url = self._start()
        elif self._recovering:
            self._recover(start, len(data))
        self._recovering = False
        if self._result is None:
            self._put(start, data, last)

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        with translated(what, self._url):
            return self._session.request(method, url, timeout=self._timeout, **kwargs)

    def _start(self) -> str:
        """Open a session; its URL (a capability: never put in messages or logs)."""
        headers = {"X-Upload-Content-Type": OCTET_STREAM}
        response = self._request("POST", self._start_url, "upload", data=b"", headers=headers)
        location = response.headers.get("Location")
        if response.status_code not in (200, 201) or not location:
            raise status_error(response.status_code, "upload", self._url, response_detail(response))
        self._confirmed = 0
        self._final_sent = False
        return str(location)

    def _recover(self, start: int, length: int) -> None:
        """After a failure: learn how much the server has, or start over if it had nothing."""
        assert self._session_url is not None
        if self._confirmed == 0:
            # Nothing confirmed yet: a new session costs one request and resends nothing
            # extra. (gcp-storage-emulator answers "Range: bytes=0-0" for an empty session,
            # which would read as one byte received.)
            self._cancel()
            self._session_url = self._start()
            return
        headers = {"Content-Range": "bytes */*"}
        response = self._request("PUT", self._session_url, "upload", headers=headers)
        self._absorb(response, start, start + length)

    def _put(self, start: int, data: memoryview, last: bool) -> None:
        assert self._session_url is not None
        offset = self._confirmed
        body = data[offset - start :] if offset > start else data
        total = "*" if not last else str(start + len(data))
        span = f"{offset}-{offset + len(body) - 1}" if body else "*"
        headers = {"Content-Range": f"bytes {span}/{total}", "Content-Type": OCTET_STREAM}
        self._final_sent = self._final_sent or last
        payload = body if body else b""  # an empty view would be sent chunked
        response = self._request("PUT", self._session_url, "upload", data=payload, headers=headers)
        self._absorb(response, start, start + len(data))
        if self._result is None and self._confirmed == offset and body:
            raise StorageUnavailable(f"cannot upload {self._url}: the server accepted no data")

    def _absorb(self, response: Any, start: int, end: int) -> None:
        """Take in the server's answer about the session: done, or how much it holds."""
        status = response.status_code
        if status in (200, 201):
            self._result = dict(response.json())
            return
        if status in (404, 410) and self._final_sent:
            self._result = {}  # the session is gone after the last chunk: check the object
            return
        if status in (404, 410):
            raise StorageError(f"cannot upload {self._url}: the upload session was lost")
        if status != 308:
            raise status_error(status, "upload", self._url, response_detail(response))
        found = _RANGE.match(response.headers.get("Range", ""))
        confirmed = int(found.group(1)) + 1 if found else 0
        if not start <= confirmed <= end:
            raise StorageError(
                f"cannot upload {self._url}: the server reports {confirmed} bytes received, "
                f"expected between {start} and {end}"
            )
        self._confirmed = confirmed

    def _verify(self, size: int, crc32c: str) -> None:
        """Check the stored object against what was sent."""
        if self._result:
            stored = (int(self._result.get("size", -1)), self._result.get("crc32c"))
            if stored[0] == size and stored[1] in (None, crc32c):
                return
            self._discard()
            raise IntegrityError(
                f"upload of {self._url} arrived corrupt (size or CRC32C differ); it was deleted",
                hint="the data changed in transit; run the command again",
            )
        stored_size, stored_crc = self._retry.call(f"stat {self._url}", self._stat)
        if stored_size != size or stored_crc not in (None, crc32c):
            raise StorageError(f"cannot upload {self._url}: the last chunk was not stored")

    def _cancel(self) -> None:
        """Abandon the current session (best effort: it expires by itself anyway)."""
        url, self._session_url = self._session_url, None
        if url is None:
            return
        try:
            self._session.request("DELETE", url, timeout=_CANCEL_TIMEOUT).close()
        except sdk_errors() as err:
            _log.debug("upload session not cancelled", object=self._url, error=type(err).__name__)
