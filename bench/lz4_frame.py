"""CPU cost of lz4 compression per GB, by API, on a relation file of a pgbench database.

Compares walg's lz4 compressor for backups (a frame of independent 1 MiB blocks, each
compressed with lz4.block in the calling thread, no content checksum:
walg.compression.lz4_blocks), the same with the xxh32 content checksum (as WAL is written), the
lz4.frame streaming API with 4 MiB blocks (walg's compressor before), and bare lz4.block
calls (the floor). Input is fed in 1 MiB chunks, as the backup pipeline feeds it.

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
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        size = run(memoryview(data))
        best = min(best, time.process_time() - started)
    print(f"  {name:<44} {best / (len(data) / 1e9):6.2f} CPU-s/GB   ratio {len(data) / size:5.2f}")


def main() -> None:
    from lz4 import block, frame

    from walg.compression.codecs import Lz4Compressor
    from walg.compression.lz4_blocks import ParallelLz4Compressor

    data = Path(sys.argv[1]).read_bytes() if len(sys.argv) > 1 else pgbench_file()

    def walg_blocks(view: memoryview, checksum: bool = False) -> int:
        c = ParallelLz4Compressor(0, 1, checksum)
        n = sum(
            len(p)
            for i in range(0, len(view), CHUNK)
            for p in c.compress_parts(view[i : i + CHUNK])
        )
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
    measure("walg lz4_blocks, 1 thread (backups now)", data, walg_blocks)
    measure("the same with xxh32 content checksum (WAL)", data, lambda v: walg_blocks(v, True))
    measure("lz4.frame, 4 MiB blocks (backups before)", data, frame_4m)
    measure("bare lz4.block calls (floor)", data, bare_blocks)
    del frame


if __name__ == "__main__":
    main()
