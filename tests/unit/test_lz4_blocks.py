"""walg.compression.lz4_blocks: lz4 blocks compressed in parallel make the frame LZ4F makes
with the same options (the same bytes for full blocks), which lz4.frame, the lz4 CLI and
walg's own decoder read."""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator

import lz4.frame
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walg.compression import compress_stream, new_compressor, open_decompressed
from walg.compression.lz4_blocks import BLOCK_SIZE, MAX_THREADS, ParallelLz4Compressor
from walg.config.settings import ConcurrencySettings
from walg.config.widths import compress_threads
from walg.wal.source import Source

SIZES = (0, 1, 4095, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE, 9 << 20)


def wal_like(size: int, seed: int = 0) -> bytes:
    """Compressible bytes with some randomness, like WAL: 8 KiB pages of repeated records."""
    rng = random.Random(seed)
    page = b"".join(rng.randbytes(16) + bytes(48) + b"md5:" * 8 for _ in range(64))
    data = (page * (size // len(page) + 1))[:size]
    return data


def serial(data: bytes, level: int = 0) -> bytes:
    """What LZ4F makes of ``data`` with the parallel compressor's options, in one thread."""
    context = lz4.frame.create_compression_context()
    header = lz4.frame.compress_begin(
        context,
        compression_level=level,
        block_size=lz4.frame.BLOCKSIZE_MAX1MB,
        block_linked=False,
        content_checksum=True,
        auto_flush=False,
    )
    body = lz4.frame.compress_chunk(context, data)
    return bytes(header + body + lz4.frame.compress_flush(context))


def feed(data: bytes, chunk: int, threads: int, level: int = 0) -> bytes:
    """``data`` compressed through compress_parts/flush_parts in ``chunk``-byte pieces."""
    compressor = new_compressor("lz4", level, threads=threads)
    assert isinstance(compressor, ParallelLz4Compressor)
    parts: list[bytes] = []
    buffer = bytearray(chunk)  # reused, as wal-push reuses its read buffer
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        buffer[: len(piece)] = piece
        parts += compressor.compress_parts(memoryview(buffer)[: len(piece)])
    parts += compressor.flush_parts()
    assert all(parts), "pieces are never empty"
    return b"".join(parts)


def same_frame(parallel: bytes, serial: bytes, size: int) -> None:
    """The same bytes where all blocks are full; else the same header and a valid frame
    (LZ4F compresses a block under 64 KiB with another table mode than lz4.block)."""
    if size % BLOCK_SIZE == 0:
        assert parallel == serial
    else:
        assert parallel[:7] == serial[:7]
        assert parallel[-8:] == serial[-8:]  # end mark and content checksum


def lz4_cli_decompress(blob: bytes) -> bytes:
    if shutil.which("lz4") is None:
        pytest.skip("the lz4 command-line tool is not installed")
    done = subprocess.run(["lz4", "-d", "-c"], input=blob, capture_output=True, check=True)
    return done.stdout


def walg_decompress(blob: bytes) -> bytes:
    with open_decompressed(io.BytesIO(blob), "lz4", "test.lz4") as reader:
        return reader.read()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["wal", "random"])
def test_same_frame_as_one_thread_and_readable_by_all(size: int, kind: str) -> None:
    """Two threads write the bytes one thread writes, for edge sizes and incompressible data;
    lz4.frame, ``lz4 -d`` and walg's decoder give the input back."""
    data = wal_like(size) if kind == "wal" else random.Random(size).randbytes(size)
    blob = feed(data, 1 << 20, threads=2)
    same_frame(blob, serial(data), size)
    assert lz4.frame.decompress(blob) == data
    assert walg_decompress(blob) == data
    if size in (0, BLOCK_SIZE + 1, 9 << 20):  # the CLI costs a process start
        assert lz4_cli_decompress(blob) == data


@pytest.mark.parametrize("size", [0, 1000, BLOCK_SIZE, 3 * BLOCK_SIZE + 5])
def test_backup_frames_carry_block_checksums_and_read_everywhere(size: int) -> None:
    """Backup parts are written with one thread and a checksum per block instead of one over
    the content: the header says so, full blocks are LZ4F's bytes, whole 1 MiB inputs
    (taken in place) and small pieces give the same frame, and every decoder reads it."""
    data = wal_like(size)
    blob = backup_frame(data, BLOCK_SIZE)
    assert blob == backup_frame(data, 4096)
    assert blob[4] == 0b01_1_1_0_0_0_0  # version 1, block independence, block checksums
    context = lz4.frame.create_compression_context()
    reference = lz4.frame.compress_begin(
        context,
        block_size=lz4.frame.BLOCKSIZE_MAX1MB,
        block_linked=False,
        content_checksum=False,
        block_checksum=True,
        auto_flush=False,
    )
    reference += lz4.frame.compress_chunk(context, data) + lz4.frame.compress_flush(context)
    if size % BLOCK_SIZE == 0:
        assert blob == reference
    assert blob[-4:] == b"\0\0\0\0"  # the end mark, nothing after it
    assert lz4.frame.decompress(blob) == data
    assert walg_decompress(blob) == data
    assert lz4_cli_decompress(blob) == data


def backup_frame(data: bytes, chunk: int) -> bytes:
    compressor = new_compressor("lz4", threads=1, checksum="blocks")
    parts: list[bytes] = []
    for start in range(0, len(data), chunk):
        parts += compressor.compress_parts(data[start : start + chunk])
    return b"".join(parts + compressor.flush_parts())


@pytest.mark.parametrize("kind", ["wal", "random"])
def test_any_damaged_byte_of_a_backup_frame_fails_its_decoding(kind: str) -> None:
    """Every stored byte is covered: a byte flipped anywhere in the frame (header, block
    lengths, compressed or stored bytes, checksums) makes walg's decoder refuse it, even
    where the damage would decode to bytes no file's CRC-32C covers."""
    from walg.errors import IntegrityError

    size = 2 * BLOCK_SIZE + 777
    data = wal_like(size) if kind == "wal" else random.Random(5).randbytes(size)
    blob = backup_frame(data, BLOCK_SIZE)
    rng = random.Random(kind)
    for at in [0, 4, 6, 7, 10, len(blob) // 2, len(blob) - 9, len(blob) - 5, len(blob) - 1] + [
        rng.randrange(len(blob)) for _ in range(40)
    ]:
        damaged = bytearray(blob)
        damaged[at] ^= 1 << rng.randrange(8)
        with pytest.raises(IntegrityError):
            walg_decompress(bytes(damaged))


def test_incompressible_blocks_are_stored() -> None:
    """A block that lz4 cannot shrink is stored as it is, flagged by the length's high bit."""
    data = random.Random(1).randbytes(BLOCK_SIZE + 100)
    blob = feed(data, 1 << 20, threads=2)
    first = struct.unpack_from("<I", blob, 7)[0]
    assert first == BLOCK_SIZE | 0x80000000
    assert blob[11 : 11 + BLOCK_SIZE] == data[:BLOCK_SIZE]
    assert lz4_cli_decompress(blob) == data


@pytest.mark.parametrize("level", [-4, 0, 2, 3, 9, 16])
def test_levels_match_lz4_frame(level: int) -> None:
    """Every level (fast, default, HC) makes the frame the one-thread compressor makes."""
    data = wal_like(2 * BLOCK_SIZE, seed=level)
    assert feed(data, 1 << 20, threads=3, level=level) == serial(data, level)
    data += b"tail"
    blob = feed(data, 1 << 20, threads=3, level=level)
    assert lz4.frame.decompress(blob) == data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(
        st.integers(0, 64 << 10),
        st.sampled_from(SIZES),
        st.integers(BLOCK_SIZE - 70000, 3 * BLOCK_SIZE + 70000),
    ),
    chunk=st.sampled_from([1, 1000, 65536, 1 << 20, 3 << 20, 5 << 20]),
    threads=st.integers(2, 6),
    random_share=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_any_size_chunking_and_threads_round_trip(
    size: int, chunk: int, threads: int, random_share: float
) -> None:
    """Whatever the size, the pieces fed and the thread count: the one-thread bytes, and
    lz4.frame and walg's decoder read them back."""
    if chunk == 1:
        size = min(size, 3000)
    rng = random.Random(size)
    cut = int(size * random_share)
    data = rng.randbytes(cut) + wal_like(size - cut)
    blob = feed(data, chunk, threads)
    same_frame(blob, serial(data), size)
    assert lz4.frame.decompress(blob) == data
    assert walg_decompress(blob) == data


def test_compress_and_flush_join_the_parts() -> None:
    """compress()/flush() return the joined parts; using it after flush is an error."""
    data = wal_like(BLOCK_SIZE * 2)
    compressor = new_compressor("lz4", threads=2)
    blob = compressor.compress(data) + compressor.flush()
    assert blob == serial(data)
    with pytest.raises(ValueError):
        compressor.compress(b"x")
    with pytest.raises(ValueError):
        compressor.flush()


def test_threads_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """No more than ``threads`` blocks (at most MAX_THREADS) compress at once, whatever the
    size of the input: memory stays a few blocks."""
    import walg.compression.lz4_blocks as lz4_blocks

    running = peak = 0
    lock = threading.Lock()
    real = lz4_blocks._block_compressor(0)

    def counting(data: memoryview) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return real(data)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(lz4_blocks, "_block_compressor", lambda level: counting)
    data = wal_like(10 * BLOCK_SIZE)
    assert feed(data, 4 << 20, threads=3) == serial(data)
    assert peak <= 3
    peak = 0
    feed(data, 4 << 20, threads=64)
    assert peak <= MAX_THREADS


def test_a_failing_block_raises_in_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in a compressing thread comes out of the compressor's next call."""
    import walg.compression.lz4_blocks as lz4_blocks

    def broken(data: memoryview) -> bytes:
        raise MemoryError("no room")

    monkeypatch.setattr(lz4_blocks, "_block_compressor", lambda level: broken)
    compressor = new_compressor("lz4", threads=2)
    with pytest.raises(MemoryError):
        compressor.compress(bytes(BLOCK_SIZE))
        compressor.flush()


def test_compress_threads_follow_upload_concurrency() -> None:
    """One upload compresses in WALG_UPLOAD_CONCURRENCY threads, no more than the cores."""
    assert compress_threads(ConcurrencySettings(upload=16), cpus=2) == 2
    assert compress_threads(ConcurrencySettings(upload=1), cpus=8) == 1
    assert compress_threads(ConcurrencySettings(upload=3), cpus=8) == 3
    assert compress_threads(ConcurrencySettings(upload=3), cpus=0) == 1


def read_source(source: Source, size: int) -> Iterator[bytes]:
    buffer = bytearray(size)
    while n := source.readinto(buffer):
        yield bytes(buffer[:n])


@pytest.mark.parametrize("threads", [1, 2])
def test_wal_source_streams_the_same_object(tmp_path: object, threads: int) -> None:
    """wal-push's Source gives the frame of one or of several compression threads, in
    reads of any size, and again after a rewind."""
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "000000010000000000000001"
    data = wal_like(16 << 20)
    path.write_bytes(data)
    expected = serial(data) if threads > 1 else b"".join(compress_stream(io.BytesIO(data), "lz4"))
    with Source(str(path), "lz4", None, (None, None), threading.Event(), threads) as source:
        assert b"".join(read_source(source, 100_000)) == expected
        source.seek(0)
        assert b"".join(read_source(source, 1 << 20)) == expected


def test_wal_source_stops_between_chunks_when_cancelled(tmp_path: object) -> None:
    """A cancelled upload stops at its next chunk, with the parallel compressor too."""
    import pathlib

    from walg.errors import Cancelled

    path = pathlib.Path(str(tmp_path)) / "000000010000000000000001"
    path.write_bytes(wal_like(16 << 20))
    cancel = threading.Event()
    with Source(str(path), "lz4", None, (None, None), cancel, 2) as source:
        assert source.read(100)
        cancel.set()
        with pytest.raises(Cancelled):
            source.read()
