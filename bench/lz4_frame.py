"""CPU cost of lz4 compression per GB, by API, on a relation file of a pgbench database.

Compares, with input fed in 1 MiB chunks as the backup pipeline feeds it:
- walg's lz4 for backups: a frame of independent 1 MiB blocks, each compressed with
  lz4.block, with an xxh32 per block over the bytes stored (walg.compression.lz4_blocks,
  one thread);
- the same with the xxh32 content checksum instead (as WAL is written);
- the lz4.frame streaming API with 4 MiB blocks (walg's compressor before);
- bare lz4.block calls (the floor);
- what a backup part's chain does per chunk in its one thread: copy into a fresh buffer
  (as the read does), CRC-32C, compress.

lz4 in a background thread per part was tried (the caller reading and checksumming the
next chunk meanwhile): on one part alone it ran 1.27x faster for 1.27x the CPU, and in
whole backup-push runs it gained nothing on pgbench data and lost on random data, so
backups compress in the chain's own thread.

    .venv/bin/python bench/lz4_frame.py [FILE]

Without FILE it makes a throwaway cluster with pgbench scale 10 and uses pgbench_accounts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CHUNK = 1 << 20


def pgbench_file() -> bytes:
    from servers.postgres import PgCluster

    cluster = PgCluster.create()
    try:
        cluster.start()
        cluster.pgbench_init(scale=10)
        cluster.psql("CHECKPOINT")
        path = cluster.psql("SELECT pg_relation_filepath('pgbench_accounts')").strip()
        return (cluster.data_dir / path).read_bytes()
    finally:
        cluster.cleanup()


def measure(name: str, data: bytes, run: Callable[[memoryview], int], repeat: int = 3) -> None:
    best, wall = float("inf"), float("inf")
    for _ in range(repeat):
        started, clock = time.process_time(), time.perf_counter()
        size = run(memoryview(data))
        best = min(best, time.process_time() - started)
        wall = min(wall, time.perf_counter() - clock)
    print(
        f"  {name:<46} {best / (len(data) / 1e9):6.2f} CPU-s/GB {len(data) / wall / 1e9:6.2f} GB/s"
        f"   ratio {len(data) / size:5.2f}"
    )


def main() -> None:
    from lz4 import block, frame

    from walg.checksum import Crc32c
    from walg.compression.codecs import Lz4Compressor
    from walg.compression.lz4_blocks import ParallelLz4Compressor

    data = Path(sys.argv[1]).read_bytes() if len(sys.argv) > 1 else pgbench_file()

    def walg_blocks(view: memoryview, checksum: str = "blocks") -> int:
        c = ParallelLz4Compressor(0, 1, checksum)
        n = sum(
            len(p)
            for i in range(0, len(view), CHUNK)
            for p in c.compress_parts(view[i : i + CHUNK])
        )
        return n + sum(len(p) for p in c.flush_parts())

    def part_chain(view: memoryview) -> int:
        """What a backup part's chain does per chunk: copy it into a fresh buffer (the
        read), CRC-32C it, compress it."""
        c = ParallelLz4Compressor(0, 1, "blocks")
        crc, n = Crc32c(), 0
        for i in range(0, len(view), CHUNK):
            chunk = bytearray(view[i : i + CHUNK])
            crc.update(chunk)
            n += sum(len(p) for p in c.compress_parts(chunk))
        return n + sum(len(p) for p in c.flush_parts())

    def frame_4m(view: memoryview) -> int:
        c = Lz4Compressor(0)
        n = sum(len(c.compress(view[i : i + CHUNK])) for i in range(0, len(view), CHUNK))
        return n + len(c.flush())

    def bare_blocks(view: memoryview) -> int:
        return sum(
            len(block.compress(view[i : i + CHUNK], store_size=False))
            for i in range(0, len(view), CHUNK)
        )

    print(f"{len(data) / 1e6:.0f} MB, 1 MiB chunks, best of 3 (process CPU time)")
    measure("walg lz4_blocks inline, block checksums", data, walg_blocks)
    measure("the same with a content checksum (WAL)", data, lambda v: walg_blocks(v, "content"))
    measure("lz4.frame, 4 MiB blocks (backups before)", data, frame_4m)
    measure("copy+CRC+lz4: a backup part's chain, per chunk", data, part_chain)
    measure("bare lz4.block calls (floor)", data, bare_blocks)
    del frame


if __name__ == "__main__":
    main()
