"""In-process cost of one wal-push and one wal-fetch of a 16 MiB segment: lz4 in one thread
(the old path) against lz4 blocks compressed in threads (walg.compression.lz4_blocks).

For each real WAL segment (generated on a throwaway PostgreSQL cluster unless --segment
names files), prints the median over --runs (and the first run) in ms of:

- compress: the segment through the compressor in 1 MiB pieces, as wal-push feeds it;
- push: walg.wal.source.Source into FileStorage.put_object (read, compress, write, fsync,
  rename, directory fsync) in a temporary directory: what wal-push does past its start;
- decode: lz4.frame.decompress of the object, walg's open_decompressed read to its end,
  and walg.wal.fetch.fetch_wal (read, decompress, write, check, fsync, rename);
- cold: ``push`` in a fresh interpreter (imports excluded; first use of the memory included),
  which is what one archive_command call pays.

    .venv/bin/python bench/wal_codec.py [--segment PATH ...] [--runs 9] [--threads N]

Times are wall clock on whatever else the machine runs: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import lz4.frame

from walg.compression import new_compressor, open_decompressed
from walg.config import load
from walg.storage.file import FileStorage
from walg.wal.fetch import fetch_wal
from walg.wal.source import Source

BENCH = Path(__file__).resolve().parent


def make_segments(count: int, into: Path) -> list[Path]:
    """``count`` real segments of a throwaway cluster (pgbench-like inserts), copied to
    ``into``."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from servers.postgres import PgCluster

    cluster = PgCluster.create()
    cluster.start()
    try:
        current = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        cluster.psql("CREATE TABLE filler (id bigint, a text, b text)")
        wal = cluster.data_dir / "pg_wal"
        while True:
            done = sorted(p.name for p in wal.iterdir() if len(p.name) == 24 and p.name > current)
            if len(done) > count:
                break
            cluster.psql(
                "INSERT INTO filler SELECT g, md5(g::text), md5((g * 7)::text) "
                "FROM generate_series(1, 200000) g"
            )
        copies = []
        for name in done[:count]:
            shutil.copy(wal / name, into / name)
            copies.append(into / name)
        return copies
    finally:
        cluster.stop()
        cluster.cleanup()


def timed(variants: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Wall times in ms of each variant, ``runs`` rounds, the variants taking turns within a
    round (so that load from other jobs falls on all of them alike)."""
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(runs):
        for label, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - start) * 1000)
    return times


def compress(data: bytes, threads: int) -> bytes:
    compressor = new_compressor("lz4", threads=threads)
    parts: list[bytes] = []
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    for start in range(0, len(data), len(buffer)):
        n = len(data[start : start + len(buffer)])
        view[:n] = data[start : start + n]
        parts += compressor.compress_parts(view[:n])
    parts += compressor.flush_parts()
    return b"".join(parts)


def push(segment: Path, storage: FileStorage, threads: int) -> None:
    cancel = threading.Event()
    with Source(str(segment), "lz4", None, (None, None), cancel, threads) as source:
        storage.put_object(f"wal_005/{segment.name}.lz4", cast(BinaryIO, source))


def walg_decode(blob: bytes) -> bytes:
    with open_decompressed(io.BytesIO(blob), "lz4", "bench") as reader:
        return reader.read()


def cold_push(segment: Path, folder: Path, threads: int) -> float:
    """``push`` once in a fresh interpreter, imports done before the clock starts."""
    code = (
        "import sys, time, threading; sys.path.insert(0, sys.argv[4]);"
        "from wal_codec import push; from walg.storage.file import FileStorage;"
        "import lz4.block, lz4.frame, xxhash;"
        "s = FileStorage(sys.argv[2]); t = time.perf_counter();"
        "push(__import__('pathlib').Path(sys.argv[1]), s, int(sys.argv[3]));"
        "print((time.perf_counter() - t) * 1000)"
    )
    args = [sys.executable, "-c", code, str(segment), str(folder), str(threads), str(BENCH)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(done.stdout)


def bench_segment(segment: Path, runs: int, threads: int, work: Path) -> None:
    data = segment.read_bytes()
    old, new = compress(data, 1), compress(data, threads)
    assert lz4.frame.decompress(new) == data and walg_decode(new) == data
    print(f"{segment.name}: {len(data) >> 20} MiB, lz4 ratio {len(data) / len(old):.2f} "
          f"(threads: {len(data) / len(new):.2f}), same bytes: {old == new}")  # fmt: skip
    storage = FileStorage(str(work / "store"))
    rows: dict[str, list[float]] = {}
    one, many = "1 thread", f"{threads} threads"
    rows |= timed({
        f"compress, {one}": lambda: compress(data, 1),
        f"compress, {many}": lambda: compress(data, threads),
        f"push to file storage, {one}": lambda: push(segment, storage, 1),
        f"push to file storage, {many}": lambda: push(segment, storage, threads),
    }, runs)  # fmt: skip
    cold = {f"push, fresh process, {one}": 1, f"push, fresh process, {many}": threads}
    for _ in range(max(3, runs // 2)):
        for label, n in cold.items():
            rows.setdefault(label, []).append(cold_push(segment, work / f"cold{n}", n))
    settings = load({"WALG_FILE_PREFIX": str(work / "store"), "WALG_COMPRESSION_METHOD": "lz4"})
    push(segment, storage, threads)
    target = work / "restored"

    def fetch() -> None:
        target.unlink(missing_ok=True)
        fetch_wal(storage, settings, segment.name, str(target))

    rows |= timed({
        "decode, lz4.frame.decompress": lambda: lz4.frame.decompress(new),
        "decode, walg open_decompressed": lambda: walg_decode(new),
        "wal-fetch to a file (fetch_wal)": fetch,
    }, runs)  # fmt: skip
    assert target.read_bytes() == data
    for label, times in rows.items():
        print(f"  {label:<40} median {statistics.median(times):6.1f} ms, min {min(times):6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment", action="append", type=Path, default=[])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="walg-codec-") as temp:
        work = Path(temp)
        segments = args.segment or make_segments(2, work)
        print(f"{os.cpu_count()} CPUs; compression threads: {args.threads}; runs: {args.runs}")
        for segment in segments:
            bench_segment(segment, args.runs, args.threads, work)


if __name__ == "__main__":
    main()
