"""WAL-G compatible streaming compression: lz4, lzma, brotli, and none.

Pure codecs: nothing here touches storage; the only I/O is on streams handed in.

Formats (checked against WAL-G's internal/compression and the libraries it uses):

- ``lz4`` -> ``.lz4``: LZ4 frame format, as WAL-G (pierrec/lz4) and the lz4 CLI read it:
  independent 1 MiB blocks, fast level, made with lz4.block
  (:mod:`walg.compression.lz4_blocks`). WAL gets an xxh32 content checksum, as WAL-G
  writes; backup parts get an xxh32 per block over the stored bytes instead (a content
  checksum cost more CPU than lz4 on compressible data; block checksums hash what is
  stored, a tenth of it there, and cover every stored byte). Linked blocks (the python-lz4
  default) are avoided: WAL-G releases built with pierrec/lz4 v1/v2 reject them. Reading
  accepts any valid frames, concatenated and skippable frames included.
- ``lzma`` -> ``.lzma``: the classic LZMA "alone" format (13-byte header, unknown size,
  end-of-stream marker), as WAL-G's ulikunitz/xz writer produces. Not .xz.
- ``brotli`` -> ``.br``: a raw brotli stream (WAL-G: cbrotli, quality 3, lgwin 22). Only
  WAL-G builds with the ``brotli`` build tag have it.
- ``none`` -> no extension: objects stored as they are (WAL-G's method "none").
- WAL-G also reads ``.zst`` (zstd, which recent WAL-G can also write), ``.gz`` and ``.lzo``;
  walg recognises these names and refuses them with a clear ConfigError naming the object
  (:func:`unreadable_error`), without trying to decode a byte.

Default levels come from ``bench/compression.py`` (one process, CPU time, 2-core machine
shared with other jobs, so +-20%). Figures are compress MB/s / decompress MB/s / ratio on
its generated 32 MiB buffers and on real PostgreSQL 15 files (a 16 MiB WAL segment of a
pgbench scale 20 run, the first 32 MiB of pgbench_accounts), via ``--file``::

                         WAL synthetic    WAL real         heap synthetic   accounts real
    lz4 0 (default)      671/1635/3.8     571/1255/2.3     1142/2107/9.5    1617/2283/15.3
    lz4 3 (HC)           174/1571/4.6     125/1272/2.8      354/2214/10.5    494/2282/16.0
    lzma 0 (default)      50/193/13.3      31/133/8.0        97/412/23.2     106/1079/76.0
    lzma 1                27/192/13.3      17/128/8.0        45/324/22.5      91/1132/75.9
    brotli 0             890/404/5.7      562/393/3.9      1221/1059/11.4   2692/1865/23.6
    brotli 1 (default)   367/468/7.0      314/456/4.3       889/855/14.8    1257/1671/30.7
    brotli 3 (WAL-G)     203/732/8.1      141/560/5.0       212/1180/18.3    351/2504/49.8

lz4 0 is lz4's fast mode, as in WAL-G; HC levels cost 4-20x the time for about 20% more.
lzma presets above 0 are 2x slower and compress no better here. brotli 1 compresses 2-4x
as fast as WAL-G's quality 3 for 15-40% less ratio; quality 0 loses another 10-25% of
ratio and decompresses WAL slower.

Corrupt, truncated or trailing data raises :class:`~walg.errors.IntegrityError`; an unknown
method raises :class:`~walg.errors.ConfigError`. Only lz4 carries a checksum (xxh32 of the
content, checked at each frame end, so damage surfaces after the frame's data was read; or
of each stored block, checked before the block is decoded).
A damaged .lzma stream loses sync and is caught by its end marker in practice; a flipped
bit in brotli literals can decode silently to wrong bytes, and uncompressed objects have no
check at all: the callers' content checksums must cover those.

Memory: ``open_decompressed`` holds one 256 KiB input chunk, the library's state (lz4: up to
4 MiB blocks; lzma: the dictionary, capped at 256 MiB; brotli: its window, 4-16 MiB) and about
three times the size of one read (five for brotli, whose output limit is approximate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO, cast

from walg.compression.codecs import (
    BrotliCompressor,
    BrotliDecompressor,
    Buffer,
    Compressor,
    Decompressor,
    Lz4Compressor,
    Lz4Decompressor,
    LzmaCompressor,
    LzmaDecompressor,
    NoneCompressor,
    NoneDecompressor,
)
from walg.compression.reader import DecompressingReader
from walg.errors import ConfigError
from walg.sizes import CHUNK

__all__ = [
    "DEFAULT_LEVELS",
    "EXTENSIONS",
    "LEVELS",
    "METHODS",
    "UNREADABLE",
    "Buffer",
    "Compressor",
    "Decompressor",
    "check_readable",
    "compress_stream",
    "extension",
    "method_for_extension",
    "new_compressor",
    "new_decompressor",
    "open_decompressed",
    "unreadable_error",
]


# Method -> object name extension (without the dot), as WAL-G names them. Read-only.
EXTENSIONS: dict[str, str] = {"lz4": "lz4", "lzma": "lzma", "brotli": "br", "none": ""}
METHODS: tuple[str, ...] = tuple(EXTENSIONS)
# Levels each method accepts (lz4 below 0 is lz4's "acceleration"; 3 and up is LZ4-HC).
LEVELS: dict[str, range] = {
    "lz4": range(-8, 17),
    "lzma": range(10),
    "brotli": range(12),
    "none": range(1),
}
DEFAULT_LEVELS: dict[str, int] = {"lz4": 0, "lzma": 0, "brotli": 1, "none": 0}
# What WAL-G can read but walg cannot: method -> extension (WAL-G's internal/compression:
# zstd/compressor.go, gzip/decompressor.go, lzo/decompressor.go).
UNREADABLE: dict[str, str] = {"zstd": "zst", "gzip": "gz", "lzo": "lzo"}

_COMPRESSORS: dict[str, Callable[[int], Compressor]] = {
    "lz4": Lz4Compressor,
    "lzma": LzmaCompressor,
    "brotli": BrotliCompressor,
    "none": NoneCompressor,
}
_DECOMPRESSORS: dict[str, Callable[[str], Decompressor]] = {
    "lz4": Lz4Decompressor,
    "lzma": LzmaDecompressor,
    "brotli": BrotliDecompressor,
    "none": NoneDecompressor,
}


# Who writes each method in UNREADABLE, and why walg cannot read it (for the one-line error).
_WHY_UNREADABLE: dict[str, tuple[str, str]] = {
    "zstd": ("WAL-G wrote it", "walg has no zstd decoder (the zstandard package is left out "
             "by design)"),
    "gzip": ("WAL-E or an old WAL-G wrote it", "walg reads only what WAL-G writes today"),
    "lzo": ("WAL-E or an old WAL-G wrote it", "walg reads only what WAL-G writes today"),
}


def unreadable_error(method: str, name: str = "") -> ConfigError:
    """The error for an object stored with ``method``, one of :data:`UNREADABLE`: what it is,
    who wrote it, why walg cannot read it, and what to do."""
    writer, why = _WHY_UNREADABLE[method]
    return ConfigError(
        f"{name or 'this object'} is compressed with {method} (.{UNREADABLE[method]}): "
        f"{writer}, and {why}",
        "read it with WAL-G itself (wal-fetch, backup-fetch, st get), or re-archive: set "
        "WAL-G's WALG_COMPRESSION_METHOD to lz4, lzma or brotli, then take a new backup and "
        "archive WAL again",
    )


def check_readable(method: str, name: str = "") -> None:
    """Raise :func:`unreadable_error` (naming ``name``) if walg cannot read ``method``."""
    if method in UNREADABLE:
        raise unreadable_error(method, name)
    _check_method(method)


def _check_method(method: str) -> None:
    if method in EXTENSIONS:
        return
    if method in UNREADABLE:
        raise ConfigError(
            f"compression method {method!r} (.{UNREADABLE[method]}) is not supported by walg: "
            f"{_WHY_UNREADABLE[method][1]}",
            "set WALG_COMPRESSION_METHOD to lz4, lzma, brotli or none",
        )
    raise ConfigError(
        f"unknown compression method {method!r}",
        "set WALG_COMPRESSION_METHOD to one of: lz4, lzma, brotli, none",
    )


def extension(method: str) -> str:
    """The object name extension for ``method``, without the dot ("" for none)."""
    _check_method(method)
    return EXTENSIONS[method]


def method_for_extension(ext: str) -> str | None:
    """The method that wrote an object with extension ``ext`` ("lz4" or ".lz4"; "" is none).

    Extensions WAL-G reads but walg does not (zst, gz, lzo) give their method name, so that
    :func:`new_decompressor` fails clearly instead of the object looking absent. Anything
    else gives None.
    """
    ext = ext.removeprefix(".")
    for table in (EXTENSIONS, UNREADABLE):
        for method, known in table.items():
            if ext == known:
                return method
    return None


def new_compressor(
    method: str, level: int | None = None, threads: int = 1, checksum: str = "content"
) -> Compressor:
    """A compressor for one stream; ``level`` defaults to :data:`DEFAULT_LEVELS`.

    lz4 writes a frame of independent 1 MiB blocks (:mod:`walg.compression.lz4_blocks`),
    compressed in ``threads`` threads at once when ``threads`` > 1, else in the caller's
    thread, with an xxh32 ``content`` checksum or one per block (``blocks``: see
    :class:`~walg.compression.lz4_blocks.ParallelLz4Compressor`); other methods ignore
    ``threads`` and ``checksum``."""
    _check_method(method)
    if level is None:
        level = DEFAULT_LEVELS[method]
    elif level not in LEVELS[method]:
        allowed = LEVELS[method]
        raise ConfigError(
            f"compression level {level} is out of range for {method}",
            f"use a level from {allowed.start} to {allowed.stop - 1}",
        )
    if method == "lz4":
        from walg.compression import lz4_blocks

        if lz4_blocks.available():
            return lz4_blocks.ParallelLz4Compressor(level, threads, checksum)
    return _COMPRESSORS[method](level)


def new_decompressor(method: str, name: str = "") -> Decompressor:
    """A decompressor for one object; ``name`` (the object's key) goes into error messages.
    A method walg cannot read (zstd, ...) raises :func:`unreadable_error` naming it."""
    check_readable(method, name)
    return _DECOMPRESSORS[method](name)


def compress_stream(
    src: BinaryIO, method: str, chunk: int = CHUNK, level: int | None = None
) -> Iterator[bytes]:
    """The compressed form of ``src``, read ``chunk`` bytes at a time, as non-empty pieces."""
    compressor = new_compressor(method, level)
    while data := src.read(chunk):
        out = compressor.compress(data)
        if out:
            yield out
    tail = compressor.flush()
    if tail:
        yield tail


def open_decompressed(src: BinaryIO, method: str, name: str = "") -> BinaryIO:
    """A readable stream of the decompressed ``src``, decompressing as it is read.

    Memory is bounded whatever the object's size or ratio (see :class:`DecompressingReader`);
    a corrupt or truncated object raises IntegrityError from ``read``. Closing it closes ``src``.
    """
    return cast(BinaryIO, DecompressingReader(src, new_decompressor(method, name)))
