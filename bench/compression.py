"""Compression speed and ratio of each walg codec at a few levels, one process.

Two generated 32 MiB buffers stand in for what walg compresses:

- ``wal``: a WAL-like stream of 8 KiB pages with page headers, holding records the way a
  pgbench (tpcb-like) run writes them: record headers with CRCs and LSNs, heap updates and
  inserts with random keys and balances, commit records with timestamps, and full-page
  images of account heap pages and primary key leaf pages for half of the account updates.
- ``heap``: pgbench_accounts-like heap pages (61 tuples per page, 84-byte blank filler),
  30% of the tuples updated (random balance, other xmin, xmax set).

``--file PATH`` adds real files (for example a WAL segment and a relation file of a
pgbench database). Compression goes through ``compress_stream`` (1 MiB reads) and
decompression through ``open_decompressed`` (1 MiB reads), as walg's stages use them.
MB is 10^6 bytes; ratio is original size / compressed size. Times are this process's CPU
time (the codecs are single-threaded, so on an idle machine it equals wall time, and it does
not move when other jobs share the CPU); each figure is the best of several runs adding up
to at least half a second.

    .venv/bin/python bench/compression.py [--mib 32] [--file PATH ...] [--quick]
"""

from __future__ import annotations

import argparse
import io
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path

from walg.compression import DEFAULT_LEVELS, compress_stream, open_decompressed

PAGE = 8192
LEVELS: dict[str, tuple[int, ...]] = {
    "lz4": (-4, 0, 3, 9),
    "lzma": (0, 1, 2, 3),
    "brotli": (0, 1, 2, 3, 5),
}
QUICK: dict[str, tuple[int, ...]] = {"lz4": (0,), "lzma": (0,), "brotli": (1,)}


def heap_page(rng: random.Random, block: int, first_aid: int, updated: float) -> bytes:
    """One pgbench_accounts-like heap page: header, line pointers, tuples from the end."""
    tuples = 61
    size = 24 + 12 + 85  # tuple header (with padding), aid/bid/abalance, char(84) filler
    aligned = (size + 7) & ~7
    body = bytearray(PAGE)
    upper = PAGE - tuples * aligned
    struct.pack_into(
        "<QHHHHHHI",
        body,
        0,
        rng.getrandbits(40),  # pd_lsn
        rng.getrandbits(16),  # pd_checksum
        0,
        24 + 4 * tuples,
        upper,
        PAGE,
        PAGE | 4,
        0,
    )
    for i in range(tuples):
        offset = PAGE - (i + 1) * aligned
        struct.pack_into("<I", body, 24 + 4 * i, offset | (1 << 15) | (size << 17))
        aid = first_aid + i
        dead = rng.random() < updated
        xmin = rng.randrange(1000, 900000) if dead else 737
        xmax = rng.randrange(1000, 900000) if dead else 0
        balance = rng.randrange(-500000, 500000) if dead else 0
        struct.pack_into(
            "<IIIHHHHHBxiiiB",
            body,
            offset,
            xmin,
            xmax,
            0,
            block >> 16,
            block & 0xFFFF,
            i + 1,
            4,
            0x0902 if dead else 0x0902 | 0x0800,
            24,
            aid,
            aid // 100000 + 1,
            balance,
            (84 + 1) << 1 | 1,
        )
        body[offset + 37 : offset + 37 + 84] = b" " * 84
    return bytes(body)


def btree_page(rng: random.Random, block: int) -> bytes:
    """One pgbench_accounts_pkey-like btree leaf page: int4 keys with their heap TIDs."""
    tuples = 407
    body = bytearray(PAGE)
    struct.pack_into(
        "<QHHHHHHI",
        body,
        0,
        rng.getrandbits(40),
        0,
        0,
        24 + 4 * tuples,
        PAGE - 16 - 16 * tuples,
        PAGE - 16,
        PAGE | 4,
        0,
    )
    first = block * tuples + rng.randrange(0, 50)
    for i in range(tuples):
        offset = PAGE - 16 - (i + 1) * 16
        struct.pack_into("<I", body, 24 + 4 * i, offset | (1 << 15) | (16 << 17))
        key = first + i
        struct.pack_into("<HHHHi", body, offset, 0, key // 61 & 0xFFFF, key % 61 + 1, 16, key)
    struct.pack_into("<IIHH", body, PAGE - 16, block - 1, block + 1, 0, 1)
    return bytes(body)


def heap_buffer(size: int, rng: random.Random) -> bytes:
    """``size`` bytes of pgbench_accounts-like heap pages."""
    return b"".join(heap_page(rng, b, b * 61 + 1, 0.3) for b in range(size // PAGE))


def wal_records(rng: random.Random, size: int) -> bytes:
    """A stream of tpcb-like WAL records (without page headers) of about ``size`` bytes."""
    out = bytearray()
    lsn, xid, now = 0x3000028, 5000, 760_000_000_000_000
    relation = struct.pack("<III", 1663, 16384, 16397)

    def record(rmid: int, info: int, block: int, data: bytes, image: bytes = b"") -> None:
        nonlocal lsn
        block_header = struct.pack("<BBH", 0, 0x10 | (0x20 if image else 0), len(data))
        if image:
            block_header += struct.pack("<HHB", len(image), 0, 0x05)
        main = block_header + relation + struct.pack("<I", block) + data + image
        header = struct.pack("<IIQBBxxI", 24 + len(main), xid, lsn, info, rmid, 0)
        header = header[:20] + rng.randbytes(4)  # the record's CRC
        out.extend(header + main)
        lsn += (24 + len(main) + 7) & ~7
        out.extend(bytes(-len(out) % 8))

    while len(out) < size:
        xid += 1
        now += rng.randrange(200, 3000)
        aid = rng.randrange(1, 5_000_001)
        delta = rng.randrange(-5000, 5001)
        block = aid // 61
        tuple_data = struct.pack("<iii", aid, aid // 100000 + 1, delta * 7) + b" " * 84
        image = b""
        if rng.random() < 0.3:
            image = heap_page(rng, block, block * 61 + 1, 0.3)
        elif rng.random() < 0.3:
            image = btree_page(rng, rng.randrange(1, 13700))
        update = struct.pack("<IHBxIH", xid - 1, aid % 61 + 1, 0x40, 0, aid % 61 + 1)
        record(10, 0x40, block, update + struct.pack("<HHB", 3, 0x0902, 24) + tuple_data, image)
        for table_block, key in ((0, rng.randrange(1, 501)), (0, rng.randrange(1, 51))):
            small = struct.pack("<iii", key, key // 10 + 1, delta * 3) + bytes(40)
            record(10, 0x40, table_block, update + small)
        history = struct.pack("<iiiiq", rng.randrange(1, 501), 1, aid, delta, now)
        record(10, 0x00, rng.randrange(0, 3000), history)
        record(1, 0x00, 0, struct.pack("<qI", now, 0))
    return bytes(out[:size])


def wal_buffer(size: int, rng: random.Random) -> bytes:
    """``size`` bytes of WAL-like pages: a page header every 8 KiB over a record stream."""
    records = memoryview(wal_records(rng, size))
    pages = []
    address = 0x3000000
    for start in range(0, size, PAGE - 24):
        header = struct.pack("<HHIQI", 0xD110, 0x0002, 1, address, 0) + bytes(4)
        pages.append(header + records[start : start + PAGE - 24])
        address += PAGE
    return b"".join(pages)[:size]


def best(run: Callable[[], object]) -> float:
    """The least CPU time of repeated runs of ``run`` totalling at least half a second."""
    times: list[float] = []
    while sum(times) < 0.5 or len(times) < 2:
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
        if times[-1] > 5:
            break
    return min(times)


def measure(method: str, level: int, data: bytes) -> tuple[float, float, float]:
    """(compress MB/s, decompress MB/s, ratio) of ``method`` at ``level`` on ``data``."""
    compressed: list[bytes] = []

    def compress() -> None:
        compressed[:] = compress_stream(io.BytesIO(data), method, level=level)

    def decompress() -> None:
        reader = open_decompressed(io.BytesIO(blob), method)
        while reader.read(1 << 20):
            pass

    seconds = best(compress)
    blob = b"".join(compressed)
    check = open_decompressed(io.BytesIO(blob), method).read()
    assert check == data, f"{method} {level}: round trip differs"
    return len(data) / seconds / 1e6, len(data) / best(decompress) / 1e6, len(data) / len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=32, help="size of each generated buffer")
    parser.add_argument("--file", type=Path, action="append", default=[], help="a real file")
    parser.add_argument("--quick", action="store_true", help="default levels only")
    args = parser.parse_args()
    size = args.mib << 20
    buffers = {
        "wal": wal_buffer(size, random.Random(1)),
        "heap": heap_buffer(size, random.Random(2)),
    }
    for path in args.file:
        buffers[path.name] = path.read_bytes()[:size]
    levels = QUICK if args.quick else LEVELS
    header = ("data", "method", "level", "comp MB/s", "decomp MB/s", "ratio")
    print("{:<26} {:<7} {:>5} {:>10} {:>12} {:>7}".format(*header))
    for name, data in buffers.items():
        for method, method_levels in levels.items():
            for level in method_levels:
                comp, decomp, ratio = measure(method, level, data)
                mark = " (default)" if level == DEFAULT_LEVELS[method] else ""
                print(
                    f"{name[:26]:<26} {method:<7} {level:>5} {comp:>10.0f} {decomp:>12.0f} "
                    f"{ratio:>7.2f}{mark}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
