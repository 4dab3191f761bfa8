"""Bridge a push-style stage (chunks arrive in ``process``) to a pull-style consumer (a
function that reads a stream, such as ``Storage.put_object`` or a tar reader), by running
the consumer in a thread fed through a small bounded queue."""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from walg.sizes import CHUNK

__all__ = ["StreamAborted", "StreamFeeder"]

_EOF = object()
_ABORT = object()


class StreamAborted(Exception):
    """The producer gave up: the stream is incomplete and must not be stored as whole."""


class _QueueReader(io.RawIOBase):
    """A readable stream over byte chunks taken from a queue, until an end marker. An
    abort marker (or the aborted flag) makes reads fail, so that a consumer never mistakes
    a cut stream for a complete one."""

    def __init__(self, chunks: queue.Queue[Any], aborted: threading.Event) -> None:
        super().__init__()
        self._chunks = chunks
        self._aborted = aborted
        self._current = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current and not self._done:
            item = self._chunks.get()
            if item is _ABORT or self._aborted.is_set():
                raise StreamAborted("the stream was aborted before its end")
            if item is _EOF:
                self._done = True
            else:
                self._current = memoryview(item).cast("B")
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


class StreamFeeder:
    """Runs ``consume(stream)`` in a thread; :meth:`feed` passes it bytes, :meth:`finish`
    ends the stream and returns what ``consume`` returned (or raises what it raised).

    If the consumer fails early, the thread keeps draining the queue so that ``feed`` never
    blocks forever; the failure is raised by the next ``feed`` or by ``finish``.
    """

    def __init__(self, consume: Callable[[BinaryIO], Any], depth: int = 4, name: str = "") -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._consume = consume
        self._result: Any = None
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name or "stream-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = _QueueReader(self._queue, self._aborted)
        try:
            self._result = self._consume(cast(BinaryIO, io.BufferedReader(reader, CHUNK)))
        except BaseException as exc:  # handed to the stage's thread by feed()/finish()
            self._error = exc
        if not reader._done:  # the consumer stopped before the end: drain the rest
            self._drain()

    def _drain(self) -> None:
        """Take chunks until the producer ends or aborts, so that feed() never blocks."""
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._aborted.is_set():
                    return
                continue
            if item is _EOF or item is _ABORT:
                return

    def feed(self, data: bytes | bytearray) -> None:
        """Hand ``data`` to the consumer; blocks while the queue is full."""
        if self._error is not None:
            raise self._error
        if data:
            self._queue.put(data)

    def end(self) -> None:
        """End the stream without waiting for the consumer (see :attr:`running`)."""
        self._queue.put(_EOF)

    @property
    def running(self) -> bool:
        """Whether the consumer has not returned (or raised) yet."""
        return self._thread.is_alive()

    def finish(self) -> Any:
        """End the stream, wait for the consumer, and return its result."""
        self.end()
        return self.result()

    def result(self) -> Any:
        """Wait for the consumer of an ended stream; return its result or raise its error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def abort(self, wait: float = 30.0) -> None:
        """Give up on the stream: the consumer's next read raises StreamAborted (so an upload
        is abandoned, never completed with a cut stream). Waits up to ``wait`` seconds."""
        self._aborted.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_ABORT)
        self._thread.join(wait)
