"""backup-verify vs backup-fetch of the same backup: is verifying clearly cheaper than a
restore?

Creates a throwaway cluster with a pgbench database (scale 55 is about 800 MB), takes one
walg backup to file storage (lz4), then times, taking turns round by round, `wal-g
backup-fetch` into an empty directory (writes, fsyncs; the directory is removed after
each run) and `wal-g backup-verify` (reads and checks everything, writes nothing), both
with WALG_DOWNLOAD_CONCURRENCY=N. Prints the median of the rounds, MB/s of the database's
size, and the fetch/verify time ratio (per round and of the medians).

    .venv/bin/python bench/verify.py [--scale 55] [--concurrency 2] [--rounds 3]
                                     [--data-checksums]

With --data-checksums the cluster is made with initdb --data-checksums, so backup-verify
also checks the page checksum of every page older than the backup's start (pure Python,
~100 MB/s per process: expect it to be slower than the default).

Runs as root (clusters run as the postgres user, as in the tests).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backup import WALG, db_size, drop_restored, timed  # also puts tests/ on sys.path
from servers.postgres import PgCluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=55)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-checksums", action="store_true")
    args = parser.parse_args()
    cluster = PgCluster.create(
        data_checksums=args.data_checksums,
        settings={"checkpoint_timeout": "30min", "max_wal_size": "4GB"},
    )
    try:
        cluster.start()
        cluster.pgbench_init(scale=args.scale)
        cluster.psql("CHECKPOINT")
        mb = db_size(cluster.data_dir) / 1e6
        work = cluster.make_dir("work")
        n = str(args.concurrency)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "PG"))},
            **cluster.env,
            "WALG_FILE_PREFIX": str(work / "storage"),
            "WALG_COMPRESSION_METHOD": "lz4",
            "WALG_ARCHIVE_CHECK": "false",
            "WALG_UPLOAD_CONCURRENCY": n,
            "WALG_UPLOAD_DISK_CONCURRENCY": n,
            "WALG_DOWNLOAD_CONCURRENCY": n,
            "WALG_LOG_LEVEL": "ERROR",
        }
        timed([WALG, "backup-push", str(cluster.data_dir)], env)
        target = work / "restore"
        fetches, verifies = [], []
        for _ in range(args.rounds):
            drop_restored(target)
            fetches.append(timed([WALG, "backup-fetch", str(target), "LATEST"], env)[0])
            drop_restored(target)
            verifies.append(timed([WALG, "backup-verify", "LATEST"], env)[0])
        fetch, verify = statistics.median(fetches), statistics.median(verifies)
        load = os.getloadavg()[0]
        print(
            f"database: pgbench scale {args.scale}, {mb:.0f} MB; lz4; file storage; "
            f"WALG_DOWNLOAD_CONCURRENCY={n}; data checksums "
            f"{'on' if args.data_checksums else 'off'}; {os.cpu_count()} cores, load {load:.1f}; "
            f"median of {args.rounds} rounds, the two taking turns"
        )
        print(f"  backup-fetch  {mb / fetch:7.1f} MB/s ({fetch:5.2f} s)")
        print(f"  backup-verify {mb / verify:7.1f} MB/s ({verify:5.2f} s)")
        ratios = ", ".join(f"{f / v:.2f}" for f, v in zip(fetches, verifies, strict=True))
        print(f"  fetch time / verify time: {fetch / verify:.2f}x (per round: {ratios})")
    finally:
        cluster.cleanup()


if __name__ == "__main__":
    main()
