"""The incremental codecs behind :mod:`walg.compression`, one class per method and direction.

Each class wraps its library's streaming API and keeps the library's exceptions inside:
corrupt, truncated or trailing input always becomes :class:`~walg.errors.IntegrityError`
naming the method (and the object, when the caller passed its name). Libraries are imported
when a codec is made, so ``wal-push`` with lz4 never loads lzma or brotli.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from walg.errors import ConfigError, IntegrityError

__all__ = [
    "BrotliCompressor",
    "BrotliDecompressor",
    "Buffer",
    "Compressor",
    "Decompressor",
    "Lz4Compressor",
    "Lz4Decompressor",
    "LzmaCompressor",
    "LzmaDecompressor",
    "NoneCompressor",
    "NoneDecompressor",
]

Buffer = bytes | bytearray | memoryview

# The largest LZMA dictionary we agree to allocate. WAL-G writes 8 MiB, xz -9 uses 64 MiB;
# a bigger value in a header means the header is damaged (or not from a backup tool).
LZMA_MEMLIMIT = 256 << 20
# brotli's Python binding bounds output per call only from version 1.2.
_BROTLI_HINT = "reading .br objects in bounded memory needs brotli>=1.2: pip install 'brotli>=1.2'"
_CORRUPT_HINT = "the object is damaged or was cut short; check the storage, or use another backup"
_EMPTY = memoryview(b"")


def _retain(view: memoryview) -> memoryview:
    """``view`` made safe to keep after returning: callers may reuse their input buffers."""
    return view if isinstance(view.obj, bytes) else memoryview(bytes(view))


def _join(parts: list[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)


class Compressor(ABC):
    """Compresses one stream: call :meth:`compress` per chunk, then :meth:`flush` once."""

    method: str = ""

    @abstractmethod
    def compress(self, data: Buffer) -> bytes:
        """Compressed bytes for ``data`` (possibly empty: the codec may buffer input)."""

    @abstractmethod
    def flush(self) -> bytes:
        """The rest of the stream, with its end marker; the compressor is finished."""

    def compress_parts(self, data: Buffer) -> list[bytes]:
        """What :meth:`compress` returns, as non-empty pieces to write in order (a codec
        that makes its output in pieces saves joining them)."""
        out = self.compress(data)
        return [out] if out else []

    def flush_parts(self) -> list[bytes]:
        """What :meth:`flush` returns, as non-empty pieces to write in order."""
        out = self.flush()
        return [out] if out else []


class Decompressor(ABC):
    """Decompresses one stored object, fed in pieces of any size.

    ``decompress(data, max_length)`` returns at most ``max_length`` bytes (all it can when
    negative); input it could not use yet is kept. While :attr:`needs_input` is False, call
    ``decompress(b"", n)`` for more output before feeding more input. When the input ends,
    :meth:`finish` raises IntegrityError unless the stream reached its end marker.
    """

    method: str = ""

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._pending = _EMPTY  # input given but not used yet (codecs that keep it here)

    def _add_input(self, data: Buffer) -> None:
        if data:
            view = memoryview(data).cast("B")
            self._pending = memoryview(bytes(self._pending) + view) if self._pending else view

    @property
    @abstractmethod
    def needs_input(self) -> bool:
        """True when no more output can come without more input."""

    @abstractmethod
    def decompress(self, data: Buffer, max_length: int = -1) -> bytes:
        """Up to ``max_length`` decompressed bytes from ``data`` and what was kept before."""

    def finish(self) -> None:
        """Check, at the end of the input, that the stream was complete (IntegrityError if not).

        Call it once ``needs_input`` is True: output still waiting is a ValueError.
        """
        if not self.needs_input:
            raise ValueError("finish() before all output was taken; call decompress(b'') first")
        self._check_end()

    @abstractmethod
    def _check_end(self) -> None:
        """Raise IntegrityError unless the stream reached its end marker."""

    def _corrupt(self, detail: str) -> IntegrityError:
        where = f" in {self._name}" if self._name else ""
        return IntegrityError(f"corrupt {self.method} data{where}: {detail}", _CORRUPT_HINT)

    def _truncated(self) -> IntegrityError:
        return self._corrupt("truncated (the stream ends before its end marker)")


class Lz4Compressor(Compressor):
    """LZ4 frames as WAL-G (pierrec/lz4) and the lz4 CLI write them: independent 4 MiB
    blocks, content checksum. Independent blocks matter: WAL-G releases that read with
    pierrec/lz4 before v4 refuse linked blocks, which are the python-lz4 default."""

    method = "lz4"

    def __init__(self, level: int) -> None:
        from lz4 import frame

        self._chunk = frame.compress_chunk
        self._end = frame.compress_flush
        self._context: Any = frame.create_compression_context()
        self._header: bytes = frame.compress_begin(
            self._context,
            compression_level=level,
            block_size=frame.BLOCKSIZE_MAX4MB,
            block_linked=False,
            content_checksum=True,
            auto_flush=False,
        )

    def compress(self, data: Buffer) -> bytes:
        if self._context is None:
            raise ValueError("compress() after flush()")
        out: bytes = self._chunk(self._context, data)
        if self._header:
            out, self._header = self._header + out, b""
        return out

    def flush(self) -> bytes:
        if self._context is None:
            raise ValueError("flush() called twice")
        out: bytes = self._header + self._end(self._context, end_frame=True)
        self._context = None
        return out


class Lz4Decompressor(Decompressor):
    """LZ4 frame format, any number of concatenated (or skippable) frames."""

    method = "lz4"

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        from lz4 import frame

        self._chunk = frame.decompress_chunk
        self._context: Any = frame.create_decompression_context()
        self._in_frame = False  # a frame has begun and its end mark is not seen yet
        self._frames = 0
        self._maybe_more = False  # the last call filled max_length: lz4 may hold more output

    @property
    def needs_input(self) -> bool:
        return not self._pending and not self._maybe_more

    def decompress(self, data: Buffer, max_length: int = -1) -> bytes:
        self._add_input(data)
        if max_length == 0:
            self._pending = _retain(self._pending)
            return b""
        parts: list[bytes] = []
        produced = 0
        while True:
            limit = -1 if max_length < 0 else max_length - produced
            if limit == 0 or not (self._pending or self._maybe_more):
                break
            self._maybe_more = False
            try:
                out, used, end = self._chunk(self._context, self._pending, max_length=limit)
            except RuntimeError as err:  # python-lz4 reports every LZ4F error this way
                raise self._corrupt(str(err)) from err
            self._pending = self._pending[used:]
            if used or end:
                self._in_frame = not end
            self._frames += end
            if out:
                parts.append(out)
                produced += len(out)
            elif not used:
                break
        self._maybe_more = max_length > 0 and produced == max_length
        self._pending = _retain(self._pending)
        return _join(parts) if parts else b""

    def _check_end(self) -> None:
        if self._in_frame:
            raise self._truncated()
        if not self._frames:
            raise self._corrupt("empty (no lz4 frame)")


class LzmaCompressor(Compressor):
    """The classic LZMA "alone" format (.lzma), as WAL-G writes with ulikunitz/xz: unknown
    size in the header, end-of-stream marker."""

    method = "lzma"

    def __init__(self, level: int) -> None:
        import lzma

        self._lzma = lzma.LZMACompressor(format=lzma.FORMAT_ALONE, preset=level)

    def compress(self, data: Buffer) -> bytes:
        return self._lzma.compress(data)

    def flush(self) -> bytes:
        return self._lzma.flush()


class LzmaDecompressor(Decompressor):
    """The LZMA "alone" format, one stream; data after its end marker is an error."""

    method = "lzma"

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        import lzma

        self._error = lzma.LZMAError
        self._lzma = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)

    @property
    def needs_input(self) -> bool:
        return self._lzma.eof or self._lzma.needs_input

    def decompress(self, data: Buffer, max_length: int = -1) -> bytes:
        if self._lzma.eof:
            if data:
                raise self._corrupt("unexpected data after the end of the stream")
            return b""
        try:
            out = self._lzma.decompress(data, max_length)
        except self._error as err:
            raise self._corrupt(str(err)) from err
        if self._lzma.eof and self._lzma.unused_data:
            raise self._corrupt("unexpected data after the end of the stream")
        return out

    def _check_end(self) -> None:
        if not self._lzma.eof:
            raise self._truncated()


class BrotliCompressor(Compressor):
    """A brotli stream (.br), window 4 MiB (lgwin 22) like WAL-G's cbrotli writer."""

    method = "brotli"

    def __init__(self, level: int) -> None:
        import brotli

        self._brotli: Any = brotli.Compressor(quality=level, lgwin=22)

    def compress(self, data: Buffer) -> bytes:
        out: bytes = self._brotli.process(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._brotli.finish()
        return out


class BrotliDecompressor(Decompressor):
    """A brotli stream. The library bounds its output buffer only roughly (it grows in
    doubling steps past the limit: up to about 2.3 x ``max_length``, at least 32 KiB); the
    excess is kept here and handed out by later calls, so no call returns more than asked."""

    method = "brotli"

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        import brotli

        if not hasattr(brotli.Decompressor, "can_accept_more_data"):
            raise ConfigError("the installed brotli module is older than 1.2", _BROTLI_HINT)
        self._error = brotli.error
        self._brotli: Any = brotli.Decompressor()
        self._leftover = _EMPTY  # output beyond what the caller asked for
        self._maybe_more = False  # the last call filled its limit: the decoder may hold more

    @property
    def needs_input(self) -> bool:
        busy = self._pending or self._leftover or self._maybe_more
        return not busy and bool(self._brotli.can_accept_more_data())

    def decompress(self, data: Buffer, max_length: int = -1) -> bytes:
        self._add_input(data)
        parts: list[bytes] = []
        produced = 0
        while max_length < 0 or produced < max_length:
            limit = -1 if max_length < 0 else max_length - produced
            out = self._leftover_or_process(limit)
            if not out:
                break
            if 0 <= limit < len(out):
                self._leftover = memoryview(out)[limit:]
                out = out[:limit]
            parts.append(out)
            produced += len(out)
        self._pending = _retain(self._pending)
        return _join(parts) if parts else b""

    def _leftover_or_process(self, limit: int) -> bytes:
        if self._leftover:
            piece = self._leftover[:limit] if limit >= 0 else self._leftover
            self._leftover = self._leftover[len(piece) :]
            return bytes(piece)
        # can_accept_more_data() is True as soon as the binding holds no input, even while
        # the decoder still has output: a call that filled its limit may have left more.
        can_take = self._brotli.can_accept_more_data()
        if can_take and self._pending and self._brotli.is_finished():
            raise self._corrupt("unexpected data after the end of the stream")
        if can_take and self._pending:
            chunk, self._pending = self._pending, _EMPTY
        elif self._maybe_more or not can_take:
            chunk = _EMPTY
        else:
            return b""
        try:
            if limit < 0:
                out: bytes = self._brotli.process(chunk)
            else:
                out = self._brotli.process(chunk, output_buffer_limit=limit)
        except self._error as err:
            raise self._corrupt(str(err)) from err
        if not out and not can_take:
            raise self._corrupt("the decoder stopped making progress")
        self._maybe_more = 0 <= limit <= len(out)
        return out

    def _check_end(self) -> None:
        if not self._brotli.is_finished():
            raise self._truncated()


class NoneCompressor(Compressor):
    """No compression: objects stored as they are (WAL-G's method "none", no extension)."""

    method = "none"

    def __init__(self, level: int = 0) -> None:
        del level

    def compress(self, data: Buffer) -> bytes:
        return data if isinstance(data, bytes) else bytes(data)

    def flush(self) -> bytes:
        return b""


class NoneDecompressor(Decompressor):
    """Uncompressed objects: bytes pass through; a cut-off object cannot be noticed here."""

    method = "none"

    def __init__(self, name: str = "") -> None:
        super().__init__(name)

    @property
    def needs_input(self) -> bool:
        return not self._pending

    def decompress(self, data: Buffer, max_length: int = -1) -> bytes:
        if not self._pending and isinstance(data, bytes) and not 0 <= max_length < len(data):
            return data
        self._add_input(data)
        take = len(self._pending) if max_length < 0 else max_length
        out = bytes(self._pending[:take])
        self._pending = _retain(self._pending[take:])
        return out

    def _check_end(self) -> None:
        pass  # nothing in a plain byte stream marks its end
