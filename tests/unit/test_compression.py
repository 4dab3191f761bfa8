"""walg.compression: WAL-G compatible codecs, streaming in bounded memory, loud on corruption."""

from __future__ import annotations

import io
import itertools
import json
import lzma
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tracemalloc
from collections.abc import Iterator

import brotli
import lz4.frame
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walg.compression import (
    EXTENSIONS,
    METHODS,
    compress_stream,
    extension,
    method_for_extension,
    new_compressor,
    new_decompressor,
    open_decompressed,
)
from walg.errors import ConfigError, IntegrityError

MIB = 1 << 20
CODECS = ("lz4", "lzma", "brotli")  # the methods that can notice damage (not "none")


def sample(size: int = 3 * MIB, seed: int = 0) -> bytes:
    """Mixed data: random bytes, long zero runs and repeated text, like database files."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    while sum(len(part) for part in parts) < size:
        kind = rng.randrange(3)
        length = rng.randrange(1, 64 << 10)
        if kind == 0:
            parts.append(rng.randbytes(length))
        elif kind == 1:
            parts.append(bytes(length))
        else:
            parts.append((b"pgbench %d " % rng.randrange(1000)) * (length // 12 + 1))
    return b"".join(parts)[:size]


def compressed(data: bytes, method: str) -> bytes:
    """``data`` compressed by walg with ``method`` at its default level."""
    return b"".join(compress_stream(io.BytesIO(data), method))


def decompressed(blob: bytes, method: str, read_size: int = MIB) -> bytes:
    """``blob`` read back through open_decompressed in reads of ``read_size``."""
    reader = open_decompressed(io.BytesIO(blob), method)
    return b"".join(iter(lambda: reader.read(read_size), b""))


class ShortReads(io.RawIOBase):
    """A source whose reads return fewer bytes than asked, following ``sizes`` in a cycle."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._sizes = itertools.cycle(sizes)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        step = next(self._sizes)
        take = min(step, len(self._data)) if size < 0 else min(step, size, len(self._data))
        out, self._data = bytes(self._data[:take]), self._data[take:]
        return out


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` cut into consecutive pieces whose sizes cycle through ``sizes``."""
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(data):
            return
        yield data[start : start + size]
        start += size


# Data that compresses (repeated fragments) as well as data that does not.
DATA = st.one_of(
    st.binary(max_size=20000),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=40), st.integers(0, 5000)),
)
SIZES = st.lists(st.integers(1, 70000), min_size=1, max_size=8)


# -- names and methods ---------------------------------------------------------------------


def test_extensions_are_walg_object_suffixes() -> None:
    """Each method maps to WAL-G's object extension, and the extension maps back."""
    assert EXTENSIONS == {"lz4": "lz4", "lzma": "lzma", "brotli": "br", "none": ""}
    for method in METHODS:
        assert method_for_extension(extension(method)) == method
        assert method_for_extension("." + extension(method)) == method
    assert method_for_extension("tar") is None


@pytest.mark.parametrize(("ext", "method"), [("zst", "zstd"), (".gz", "gzip"), ("lzo", "lzo")])
def test_extensions_walg_reads_but_walg_py_cannot_fail_clearly(ext: str, method: str) -> None:
    """Objects WAL-G stored with zstd, gzip or lzo are recognised and refused with ConfigError."""
    assert method_for_extension(ext) == method
    with pytest.raises(ConfigError, match=f"is compressed with {method} .*wrote it"):
        new_decompressor(method)
    with pytest.raises(ConfigError, match="not supported by walg"):
        new_compressor(method)


def test_unknown_method_or_level_is_a_config_error() -> None:
    """An unknown method or an out-of-range level raises ConfigError with a hint."""
    with pytest.raises(ConfigError, match="unknown compression method") as caught:
        new_compressor("lz5")
    assert "lz4" in caught.value.hint
    with pytest.raises(ConfigError):
        new_decompressor("LZ4")
    with pytest.raises(ConfigError, match="out of range"):
        new_compressor("brotli", 12)
    with pytest.raises(ConfigError):
        extension("xz")


def test_importing_the_module_loads_no_codec_library() -> None:
    """``import walg.compression`` loads none of lz4, lzma and brotli (wal-push starts fast)."""
    probe = "import json, sys, walg.compression; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"lz4", "lz4.frame", "lzma", "_lzma", "brotli", "_brotli"}


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=DATA, write_sizes=SIZES, source_sizes=SIZES, read_sizes=SIZES)
def test_round_trip_with_any_chunking(
    method: str, data: bytes, write_sizes: list[int], source_sizes: list[int], read_sizes: list[int]
) -> None:
    """Data compressed in any chunking reads back equal through short source reads and reads of
    any size, and no read returns more than it asked for."""
    compressor = new_compressor(method)
    blob = b"".join(compressor.compress(p) for p in pieces(data, write_sizes)) + compressor.flush()
    reader = open_decompressed(ShortReads(blob, source_sizes), method)  # type: ignore[arg-type]
    out = []
    for size in itertools.cycle(read_sizes):
        piece = reader.read(size)
        assert len(piece) <= size
        if not piece:
            break
        out.append(piece)
    assert b"".join(out) == data


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=40, deadline=None)
@given(data=DATA, feed_sizes=SIZES, limits=SIZES)
def test_decompressor_with_reused_input_buffer(
    method: str, data: bytes, feed_sizes: list[int], limits: list[int]
) -> None:
    """The decompressor keeps unused input safely although the caller overwrites its buffer,
    honours max_length, and drains all output when needs_input says so."""
    blob = compressed(data, method)
    decompressor = new_decompressor(method)
    scratch = bytearray(max(feed_sizes))
    out: list[bytes] = []
    limit_cycle = itertools.cycle(limits)
    for piece in pieces(blob, feed_sizes):
        scratch[: len(piece)] = piece
        view = memoryview(scratch)[: len(piece)]
        while True:
            limit = next(limit_cycle)
            got = decompressor.decompress(view, limit)
            view = memoryview(b"")
            scratch[:] = b"\xa5" * len(scratch)  # the caller reuses its buffer at once
            assert len(got) <= limit
            out.append(got)
            if decompressor.needs_input:
                break
    while not decompressor.needs_input:
        out.append(decompressor.decompress(b"", 4096))
    decompressor.finish()
    assert b"".join(out) == data


@pytest.mark.parametrize("method", METHODS)
def test_empty_input_round_trips(method: str) -> None:
    """An empty source compresses to a valid (possibly empty) object that reads back empty."""
    assert decompressed(compressed(b"", method), method) == b""


@pytest.mark.parametrize("method", METHODS)
def test_reader_supports_readinto_and_read_all(method: str) -> None:
    """readinto fills the caller's buffer, read() with no size reads to the end."""
    data = sample(MIB + 123)
    blob = compressed(data, method)
    reader = open_decompressed(io.BytesIO(blob), method)
    buffer = bytearray(1000)
    assert reader.readinto(buffer) == 1000  # type: ignore[attr-defined]
    assert bytes(buffer) == data[:1000]
    assert reader.read() == data[1000:]
    assert reader.read(10) == b""
    reader.close()
    with pytest.raises(ValueError):
        reader.read(1)


# -- formats: what WAL-G writes ------------------------------------------------------------------


def test_lz4_frames_are_written_like_walg_and_the_lz4_cli() -> None:
    """Our lz4 frame header is one WAL-G (pierrec/lz4) and the lz4 CLI read: independent
    1 MiB blocks with a content checksum; linked blocks would break older WAL-G readers."""
    blob = compressed(b"x" * 1000, "lz4")
    magic, flags, block_descriptor = struct.unpack_from("<IBB", blob)
    assert magic == 0x184D2204
    assert flags == 0b01_1_0_0_1_0_0  # version 1, block independence, content checksum
    assert block_descriptor == 6 << 4  # 1 MiB blocks


def test_lzma_is_the_alone_format_with_end_marker() -> None:
    """Our .lzma objects are the "alone" format: lc3 lp0 pb2, unknown size, end marker."""
    blob = compressed(b"x" * 1000, "lzma")
    assert blob[0] == 0x5D
    assert blob[5:13] == b"\xff" * 8
    assert lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(blob) == b"x" * 1000


@pytest.mark.parametrize(
    ("method", "library_decompress"),
    [
        ("lz4", lz4.frame.decompress),
        ("lzma", lambda blob: lzma.decompress(blob, format=lzma.FORMAT_ALONE)),
        ("brotli", brotli.decompress),
    ],
)
def test_library_decompressors_read_our_objects(method: str, library_decompress: object) -> None:
    """Each library's own one-shot decompressor reads what our compressor wrote."""
    data = sample()
    assert library_decompress(compressed(data, method)) == data  # type: ignore[operator]


@pytest.mark.parametrize(
    ("method", "library_compress"),
    [
        ("lz4", lz4.frame.compress),  # linked 64 KiB blocks, content size stored
        ("lz4", lambda d: lz4.frame.compress(d, compression_level=9, block_checksum=True)),
        ("lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE, preset=6)),
        ("brotli", lambda d: brotli.compress(d, quality=11, lgwin=24)),
    ],
)
def test_we_read_library_written_objects(method: str, library_compress: object) -> None:
    """We read what each library writes with settings unlike ours."""
    data = sample()
    assert decompressed(library_compress(data), method, 77777) == data  # type: ignore[operator]


CLIS = {
    "lz4": (["lz4", "-d", "-c"], ["lz4", "-c"], "lz4"),
    "lzma": (["xz", "--format=lzma", "-d", "-c"], ["xz", "--format=lzma", "-c"], "xz-utils"),
    "brotli": (["brotli", "-d", "-c"], ["brotli", "-c"], "brotli"),
}


def need_cli(method: str) -> list[str]:
    """The decompress command for ``method``; skips the test when its tool is not installed."""
    command, _, package = CLIS[method]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (Debian package {package})")
    return command


@pytest.mark.parametrize("method", CODECS)
def test_cli_tools_read_our_objects(method: str) -> None:
    """The reference CLI (lz4, xz --format=lzma, brotli) decompresses what we write."""
    command = need_cli(method)
    data = sample()
    done = subprocess.run(command, input=compressed(data, method), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


@pytest.mark.parametrize(
    ("method", "extra"),
    [("lz4", []), ("lz4", ["-BD", "--no-frame-crc", "-9"]), ("lzma", []), ("brotli", [])],
)
def test_we_read_cli_written_objects(method: str, extra: list[str]) -> None:
    """We decompress what the reference CLIs write; xz --format=lzma writes WAL-G's exact
    .lzma header (8 MiB dictionary, unknown size, end marker)."""
    need_cli(method)
    data = sample()
    command = CLIS[method][1] + extra
    blob = subprocess.run(command, input=data, capture_output=True, check=True).stdout
    assert decompressed(blob, method, 65536) == data


# -- lz4 frames --------------------------------------------------------------------------------


def test_concatenated_and_skippable_lz4_frames_decompress_fully() -> None:
    """Several lz4 frames back to back (with a skippable frame between) read as one stream."""
    parts = [sample(200000, seed) for seed in range(3)]
    skippable = struct.pack("<II", 0x184D2A50, 5) + b"hello"
    blob = compressed(parts[0], "lz4") + skippable + lz4.frame.compress(parts[1])
    blob += compressed(parts[2], "lz4")
    whole = b"".join(parts)
    source = ShortReads(blob, [3, 1000, 70000])
    reader = open_decompressed(source, "lz4")  # type: ignore[arg-type]
    assert reader.read(50000) == whole[:50000]
    assert reader.read() == whole[50000:]
    for read_size in (1, 4097, MIB):
        assert decompressed(blob, "lz4", read_size) == whole


# -- damage --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", CODECS)
def test_every_truncation_raises_integrity_error(method: str) -> None:
    """Any object cut short (including empty) raises IntegrityError instead of reading short."""
    blob = compressed(sample(20000) + bytes(100000), method)
    for cut in range(len(blob)):
        with pytest.raises(IntegrityError, match=f"corrupt {method} data"):
            decompressed(blob[:cut], method)


@pytest.mark.parametrize("method", CODECS)
def test_trailing_garbage_raises_integrity_error(method: str) -> None:
    """Bytes after the end of the stream raise IntegrityError."""
    blob = compressed(sample(100000), method)
    for garbage in (b"\0", b"garbage!" * 100):
        with pytest.raises(IntegrityError):
            decompressed(blob + garbage, method)


@pytest.mark.parametrize("method", ["lz4", "lzma"])
def test_bit_flips_never_give_silently_wrong_output(method: str) -> None:
    """lz4 (content checksum) and lzma (end marker at the exact end): a flipped bit anywhere
    raises IntegrityError, unless the output is still exactly right."""
    data = sample(300000)
    blob = compressed(data, method)
    rng = random.Random(7)
    errors = 0
    for _ in range(150):
        damaged = bytearray(blob)
        damaged[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        try:
            assert decompressed(bytes(damaged), method) == data
        except IntegrityError as err:
            assert f"corrupt {method} data" in err.msg
            errors += 1
    assert errors > 100


def test_brotli_flips_in_structure_raise_integrity_error() -> None:
    """brotli has no checksum, so a flipped literal bit can pass unseen (the backup's own file
    checksums must catch that); flips in its first meta-block header and last byte raise."""
    blob = compressed(sample(300000), "brotli")
    for position in (1, 2, 3, len(blob) - 1):
        for bit in range(8):
            damaged = bytearray(blob)
            damaged[position] ^= 1 << bit
            with pytest.raises(IntegrityError, match="corrupt brotli data"):
                decompressed(bytes(damaged), "brotli")


def test_errors_name_the_object_and_keep_the_cause() -> None:
    """The object's name is in the message, with a hint; the library error is the cause."""
    blob = bytearray(compressed(sample(100000), "lz4"))
    blob[len(blob) // 2] ^= 0xFF
    name = "wal_005/000000010000000000000003.lz4"
    reader = open_decompressed(io.BytesIO(bytes(blob)), "lz4", name=name)
    with pytest.raises(IntegrityError) as caught:
        reader.read()
    assert name in caught.value.msg
    assert caught.value.hint
    assert isinstance(caught.value.__cause__, RuntimeError)


# -- memory --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", CODECS)
def test_decompressing_256_mib_keeps_memory_bounded(method: str) -> None:
    """Reading 256 MiB out of a tiny object allocates a few MiB, not the output size."""
    total = 256 * MIB
    compressor = new_compressor(method)
    zeros = bytes(MIB)
    blob = b"".join(compressor.compress(zeros) for _ in range(total // MIB)) + compressor.flush()
    tracemalloc.start()
    try:
        reader = open_decompressed(io.BytesIO(blob), method)
        produced = 0
        while piece := reader.read(MIB):
            produced += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert produced == total
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_tarfile_streams_through_the_reader() -> None:
    """tarfile in stream mode ("r|") reads a compressed tar part through open_decompressed."""
    files = {"base/1/1259": sample(300000, 1), "global/pg_control": sample(8192, 2)}
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w|") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    reader = open_decompressed(io.BytesIO(compressed(plain.getvalue(), "lz4")), "lz4")
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        found = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert found == files
