"""LZ4 frames made of independent blocks compressed by several threads at once.

The frame is the one :class:`~walg.compression.codecs.Lz4Compressor` writes, but with
1 MiB blocks instead of 4 MiB: header with the independent-blocks and content-checksum flags
and a 1 MiB block size (BD 6, which WAL-G's pierrec/lz4 and the lz4 CLI read like BD 7),
then each 1 MiB of input as one block (a 4-byte little-endian length, its high bit set when
the block is stored because compressing did not make it smaller), the end mark, and the
xxh32 of the content. Full blocks are the same bytes LZ4F makes with 1 MiB blocks; a last
block under 64 KiB may differ by a few bytes (LZ4F compresses it with another table mode),
equally valid. lz4's window is 64 KiB, so 1 MiB blocks compress as well as 4 MiB ones;
they need a quarter of the memory, and their buffers are reused 16 times per segment
(first use of fresh memory costs a 16 MiB segment ~9 ms here).

Blocks are compressed with ``lz4.block`` (raw, no size prefix), which releases the GIL, so
``threads`` blocks compress in parallel; the content checksum is computed by the caller's
thread (xxhash releases the GIL too) as the data comes in. With one thread, blocks are
compressed in the caller's thread, and an input that is a whole block (a backup's 1 MiB
chunks) is compressed where it is, without being copied: this costs about 0.35 CPU-s/GB
of pgbench data where lz4.frame's streaming API costs 0.9 (bench/lz4_frame.py).

Memory: the block being filled plus at most ``threads`` blocks in flight, each with its
compressed form (under 1.01 MiB): about ``2 * (threads + 1)`` MiB at most.

Each block runs in a short-lived thread of its own (16 per segment, ~0.1 ms each): starting one
costs far less than importing ``concurrent.futures`` (~15 ms), and a compressor that is
dropped midway leaves nothing to shut down (its threads end with their block).
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from walg.compression.codecs import Buffer, Compressor

__all__ = ["BLOCK_SIZE", "MAX_THREADS", "ParallelLz4Compressor", "available"]

BLOCK_SIZE: Final = 1 << 20
"""Input bytes per block: the frame's maximum block size (BD 6)."""
MAX_THREADS: Final = 4
"""Beyond 4 threads, lz4 at ~0.5-1 GB/s per core outruns reading and writing a segment."""
_STORED: Final = 0x80000000  # block length flag: the block is stored uncompressed
_END_MARK: Final = b"\0\0\0\0"


def available() -> bool:
    """Whether the parallel path can run (it needs the ``xxhash`` module)."""
    try:
        import xxhash  # noqa: F401
    except ImportError:
        return False
    return True


def _block_compressor(level: int) -> Callable[[Buffer], bytes]:
    """Raw LZ4 block compression as LZ4F does it at ``level``: fast mode with acceleration
    ``1 - level`` below 0, the default mode for 0-2, LZ4-HC at ``level`` from 3 on."""
    from lz4 import block

    compress: Callable[..., bytes] = block.compress
    if level >= 3:
        return lambda data: compress(
            data, mode="high_compression", compression=level, store_size=False
        )
    if level < 0:
        return lambda data: compress(data, mode="fast", acceleration=1 - level, store_size=False)
    return lambda data: compress(data, store_size=False)


_HEADERS: dict[tuple[int, str], bytes] = {}


def _frame_header(level: int, checksum: str) -> bytes:
    """The frame header (magic, FLG, BD, header checksum), taken from an empty frame of
    lz4.frame with Lz4Compressor's options but 1 MiB blocks, and a content checksum or
    block checksums as ``checksum`` says; made once per process."""
    made = _HEADERS.get((level, checksum))
    if made is not None:
        return made
    from lz4 import frame

    context = frame.create_compression_context()
    header: bytes = frame.compress_begin(
        context,
        compression_level=level,
        block_size=frame.BLOCKSIZE_MAX1MB,
        block_linked=False,
        content_checksum=checksum == "content",
        block_checksum=checksum == "blocks",
        auto_flush=False,
    )
    _HEADERS[level, checksum] = header
    return header


def _framed(
    data: memoryview, compress: Callable[[Buffer], bytes], block_sum: Callable[[bytes], int] | None
) -> tuple[bytes, ...]:
    """One block of the frame: its 4-byte length and its bytes, compressed, or stored as
    they are when compressing does not make them smaller; with ``block_sum``, then the
    xxh32 of those stored bytes (the block checksum)."""
    packed = compress(data)
    if len(packed) < len(data):
        length = struct.pack("<I", len(packed))
    else:
        packed = bytes(data)
        length = struct.pack("<I", len(data) | _STORED)
    if block_sum is None:
        return length, packed
    return length, packed, struct.pack("<I", block_sum(packed))


class _Job:
    """One block being compressed in its own thread; ``framed`` is its length and data."""

    def __init__(
        self,
        data: memoryview,
        compress: Callable[[Buffer], bytes],
        block_sum: Callable[[bytes], int] | None,
    ) -> None:
        self.framed: tuple[bytes, ...] = ()
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(data, compress, block_sum), name="walg-lz4", daemon=True
        )
        self._thread.start()

    def _run(
        self,
        data: memoryview,
        compress: Callable[[Buffer], bytes],
        block_sum: Callable[[bytes], int] | None,
    ) -> None:
        try:
            self.framed = _framed(data, compress, block_sum)
        except BaseException as err:  # re-raised in the caller's thread by result()
            self.error = err

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> tuple[bytes, ...]:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.framed


class ParallelLz4Compressor(Compressor):
    """An lz4 frame as ``Lz4Compressor(level)`` writes one (with 1 MiB blocks), up to
    ``threads`` blocks compressed at once. ``checksum`` is where the frame's xxh32 goes:
    ``content``, over all the input (as lz4.frame writes, for WAL), or ``blocks``, one per
    block over the bytes stored (for backup parts: on compressible data it hashes a tenth
    of the bytes, where a content checksum cost more CPU than lz4 itself, and it still
    covers every stored byte, so a damaged object fails to decode). :meth:`compress`
    returns the blocks finished so far, in order (often nothing); :meth:`compress_parts`
    and :meth:`flush_parts` return them unjoined, saving a copy."""

    method = "lz4"

    def __init__(self, level: int, threads: int, checksum: str = "content") -> None:
        if checksum not in ("content", "blocks"):
            raise ValueError(f"checksum must be 'content' or 'blocks', not {checksum!r}")
        import xxhash

        self._threads = max(1, min(threads, MAX_THREADS))
        self._compress = _block_compressor(level)
        self._hash: Any = xxhash.xxh32() if checksum == "content" else None
        self._block_sum = xxhash.xxh32_intdigest if checksum == "blocks" else None
        self._header = _frame_header(level, checksum)
        self._block = memoryview(bytearray(BLOCK_SIZE))
        self._filled = 0
        self._spare: list[memoryview] = []  # block buffers whose job is done, for reuse
        self._jobs: deque[tuple[_Job, memoryview]] = deque()
        self._finished = False

    def compress(self, data: Buffer) -> bytes:
        return _join(self.compress_parts(data))

    def flush(self) -> bytes:
        return _join(self.flush_parts())

    def compress_parts(self, data: Buffer) -> list[bytes]:
        if self._finished:
            raise ValueError("compress() after flush()")
        view = memoryview(data).cast("B")
        if self._hash is not None:
            self._hash.update(view)
        parts: list[bytes] = []
        if self._threads == 1 and not self._filled and len(view) == BLOCK_SIZE:
            # a whole block: compress it in place
            parts += _framed(view, self._compress, self._block_sum)
            return self._out(parts)
        while view:
            n = min(len(view), BLOCK_SIZE - self._filled)
            self._block[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == BLOCK_SIZE:
                self._submit(parts)
        while self._jobs and self._jobs[0][0].done():
            self._take(parts)
        return self._out(parts)

    def flush_parts(self) -> list[bytes]:
        if self._finished:
            raise ValueError("flush() called twice")
        self._finished = True
        parts: list[bytes] = []
        if self._filled:
            self._submit(parts)
        while self._jobs:
            self._take(parts)
        parts.append(_END_MARK)
        if self._hash is not None:
            parts.append(struct.pack("<I", self._hash.intdigest()))
        self._spare.clear()
        return self._out(parts)

    def _submit(self, parts: list[bytes]) -> None:
        """Start compressing the filled block; first wait for the oldest if all threads
        are busy (its output goes to ``parts``). With one thread, compress it here."""
        if self._threads == 1:
            parts += _framed(self._block[: self._filled], self._compress, self._block_sum)
            self._filled = 0
            return
        if len(self._jobs) >= self._threads:
            self._take(parts)
        block = self._block
        self._jobs.append((_Job(block[: self._filled], self._compress, self._block_sum), block))
        self._block = self._spare.pop() if self._spare else memoryview(bytearray(BLOCK_SIZE))
        self._filled = 0

    def _take(self, parts: list[bytes]) -> None:
        """Wait for the oldest job and add its output to ``parts``."""
        job, block = self._jobs.popleft()
        parts += job.result()
        self._spare.append(block)

    def _out(self, parts: list[bytes]) -> list[bytes]:
        if self._header:
            parts.insert(0, self._header)
            self._header = b""
        return parts


def _join(parts: list[bytes]) -> bytes:
    return b"".join(parts) if len(parts) != 1 else parts[0]
