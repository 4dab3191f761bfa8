"""A bounded multi-producer, multi-consumer channel over a shared-memory ring.

The ring is ``slots`` fixed-size slots in one anonymous shared mapping, inherited by
forked workers. A message starts at a slot boundary and fills as many consecutive slots
as it needs; two counting semaphores (free slots, filled slots) bound the channel and wake
blocked producers and consumers. Producers hold the put lock for a whole message and
consumers the get lock, so messages never interleave.

Payload bytes are copied once into the ring by the producer and once out of it by the
consumer (see ``bench/pipeline_throughput.py`` for why this beats a pickling queue).

End of stream is counted: every upstream worker puts one END when it finishes; the
consumer that takes the last expected END marks the channel closed, and every later
``get`` raises :class:`EndOfStream` without blocking.

Blocking calls are plain semaphore and lock waits, in the functions of ``BLOCKING_CODE``:
the runtime cancels a worker with a signal whose handler raises only while the worker runs
one of these (see ``walg.pipeline.worker``), which interrupts the wait. A channel a
cancellation interrupted is not used again.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from typing import Any

from walg.pipeline import codec

__all__ = ["BLOCKING_CODE", "MIN_SLOT_SIZE", "Channel", "EndOfStream"]

MIN_SLOT_SIZE = 4096

_DATA, _END = 0, 1
# kind, total message length, header length, number of out-of-band buffers
_FIXED = struct.Struct("<BQII")
_LEN = struct.Struct("<Q")
# the prefix (fixed part + buffer lengths) must fit in the first slot
_MAX_PREFIX = _FIXED.size + _LEN.size * (codec.MAX_BUFFERS + 1)


class EndOfStream(Exception):
    """Every upstream worker has finished and the channel is drained."""


class Channel:
    """A bounded channel of picklable items between worker processes (fork only)."""

    def __init__(self, ctx: Any, slots: int, slot_size: int, expected_ends: int) -> None:
        if slots < 1 or slot_size < MIN_SLOT_SIZE or expected_ends < 1:
            raise ValueError("a channel needs slots >= 1, slot_size >= 4096, expected_ends >= 1")
        self.slots = slots
        self.slot_size = slot_size
        self._ring_size = slots * slot_size
        self._mem = mmap.mmap(-1, self._ring_size)
        self._view = memoryview(self._mem)
        # [slots written, slots read, ENDs seen, closed flag]
        self._state = ctx.RawArray("q", 4)
        self._expected_ends = expected_ends
        self._free = ctx.Semaphore(slots)
        self._filled = ctx.Semaphore(0)
        self._put_lock = ctx.Lock()
        self._get_lock = ctx.Lock()

    # -- producer side -------------------------------------------------------------------

    def put(self, item: Any) -> None:
        """Send ``item``; block while the channel is full."""
        header, buffers = codec.encode(item)
        self._put_message(_DATA, header, buffers)

    def put_encoded(self, header: bytes, buffers: Sequence[memoryview]) -> None:
        """Send an item already split by :func:`codec.encode` (to send one item to many)."""
        self._put_message(_DATA, header, buffers)

    def put_end(self) -> None:
        """Tell consumers that this producer has finished."""
        self._put_message(_END, b"", [])

    def _put_message(self, kind: int, header: bytes, buffers: Sequence[memoryview]) -> None:
        lengths = [b.nbytes for b in buffers]
        prefix_len = _FIXED.size + _LEN.size * len(lengths)
        total = prefix_len + len(header) + sum(lengths)
        prefix = _FIXED.pack(kind, total, len(header), len(lengths))
        prefix += struct.pack(f"<{len(lengths)}Q", *lengths)
        with self._put_lock:
            writer = _SlotWriter(self)
            for piece in (memoryview(prefix), memoryview(header), *buffers):
                writer.write(piece)
            writer.finish()

    # -- consumer side -------------------------------------------------------------------

    def get(self) -> Any:
        """Return the next item; raise :class:`EndOfStream` once every producer has ended."""
        with self._get_lock:
            while True:
                if self._state[3]:
                    raise EndOfStream()
                self._filled.acquire()
                start = (self._state[1] % self.slots) * self.slot_size
                kind, total, header_len, nbufs = _FIXED.unpack_from(self._mem, start)
                if kind == _END:
                    self._release(1)
                    self._state[2] += 1
                    if self._state[2] >= self._expected_ends:
                        self._state[3] = 1
                    continue
                return self._read_data(start, total, header_len, nbufs)

    def _read_data(self, start: int, total: int, header_len: int, nbufs: int) -> Any:
        lengths = struct.unpack_from(f"<{nbufs}Q", self._mem, start + _FIXED.size)
        offset = _FIXED.size + _LEN.size * nbufs
        nslots = -(-total // self.slot_size)
        if nslots <= self.slots:
            for _ in range(nslots - 1):
                self._filled.acquire()
            header = self._copy(start, offset, header_len)
            offset += header_len
            buffers = []
            for length in lengths:
                buffers.append(self._copy(start, offset, length))
                offset += length
            self._release(nslots)
        else:  # larger than the whole ring: stream it through slot by slot
            message = self._stream_out(start, total, nslots)
            header = message[offset : offset + header_len]
            offset += header_len
            buffers = []
            for length in lengths:
                buffers.append(message[offset : offset + length])
                offset += length
        return codec.decode(header, buffers)

    def _copy(self, start: int, offset: int, length: int) -> bytes:
        begin = (start + offset) % self._ring_size
        end = begin + length
        if end <= self._ring_size:
            return bytes(self._view[begin:end])
        return bytes(self._view[begin:]) + bytes(self._view[: end - self._ring_size])

    def _stream_out(self, start: int, total: int, nslots: int) -> bytes:
        out = bytearray()
        for i in range(nslots):
            if i:
                self._filled.acquire()
                start = (self._state[1] % self.slots) * self.slot_size
            take = min(self.slot_size, total - len(out))
            out += self._view[start : start + take]
            self._release(1)
        return bytes(out)

    def close(self) -> None:
        """Unmap the ring in this process (after every worker using it has ended)."""
        self._view.release()
        self._mem.close()

    def _release(self, nslots: int) -> None:
        self._state[1] += nslots
        for _ in range(nslots):
            self._free.release()


class _SlotWriter:
    """Writes one message into consecutive slots, publishing each slot when it is full."""

    def __init__(self, channel: Channel) -> None:
        self._ch = channel
        self._slot_start = -1
        self._used = channel.slot_size  # forces a fresh slot on the first write

    def write(self, data: memoryview) -> None:
        ch = self._ch
        data = data.cast("B") if data.format != "B" else data
        pos, size = 0, data.nbytes
        while pos < size:
            if self._used == ch.slot_size:
                self._next_slot()
            take = min(ch.slot_size - self._used, size - pos)
            at = self._slot_start + self._used
            ch._view[at : at + take] = data[pos : pos + take]
            self._used += take
            pos += take

    def _next_slot(self) -> None:
        ch = self._ch
        if self._slot_start >= 0:
            ch._filled.release()
        ch._free.acquire()
        self._slot_start = (ch._state[0] % ch.slots) * ch.slot_size
        ch._state[0] += 1
        self._used = 0

    def finish(self) -> None:
        if self._slot_start < 0:
            self._next_slot()
        self._ch._filled.release()


BLOCKING_CODE = frozenset(
    f.__code__
    for f in (
        Channel.get,
        Channel._read_data,
        Channel._stream_out,
        Channel._put_message,
        _SlotWriter._next_slot,
    )
)
"""The code of every function that waits for another process (the cancellation points)."""
