"""A readable stream that decompresses another one lazily, in bounded memory."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO

from walg.compression.codecs import Decompressor
from walg.sizes import CHUNK

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["INPUT_CHUNK", "DecompressingReader"]

# Compressed bytes taken from the source per refill.
INPUT_CHUNK = 256 << 10
# What read1() and readinto1() give at most when the caller names no size.
DEFAULT_READ = 1 << 20


class DecompressingReader(io.BufferedIOBase):
    """The decompressed bytes of ``src``, produced as they are read.

    ``read(n)`` returns exactly ``n`` bytes except at the end, like a buffered file;
    ``read1(n)`` returns what one step gives, at most ``n``. Memory stays bounded by the
    decompressor's state plus one input chunk plus what the caller asked for (see the
    brotli note in :class:`~walg.compression.codecs.BrotliDecompressor`). At the end of
    ``src`` the stream is checked: a truncated object raises IntegrityError instead of
    reading as a short one. Closing the reader closes ``src``.
    """

    def __init__(
        self, src: BinaryIO, decompressor: Decompressor, input_chunk: int = INPUT_CHUNK
    ) -> None:
        super().__init__()
        self._src = src
        self._decompressor = decompressor
        self._input_chunk = input_chunk
        self._ended = False

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if size < 0:
            size = CHUNK
        decompressor = self._decompressor
        while size and not self._ended:
            data = b""
            if decompressor.needs_input:
                data = self._src.read(self._input_chunk)
                if not data:
                    self._ended = True
                    decompressor.finish()
                    break
            out = decompressor.decompress(data, size)
            if out:
                return out
        return b""

    def read(self, size: int | None = -1) -> bytes:
        parts: list[bytes] = []
        remaining = -1 if size is None or size < 0 else size
        while remaining:
            piece = self.read1(remaining if remaining > 0 else CHUNK)
            if not piece:
                break
            parts.append(piece)
            if remaining > 0:
                remaining -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._readinto(buffer, whole=True)

    def readinto1(self, buffer: WriteableBuffer) -> int:
        return self._readinto(buffer, whole=False)

    def _readinto(self, buffer: WriteableBuffer, whole: bool) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            piece = self.read1(len(view) - filled)
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
            if not piece or not whole:
                break
        return filled

    def close(self) -> None:
        if not self.closed:
            try:
                self._src.close()
            finally:
                super().close()
