"""backup-push / backup-fetch throughput against pgBackRest, in the same run.

Creates a throwaway cluster with a pgbench database (scale 70 is about 1 GB), then times:
walg backup-push and backup-fetch to file storage with lz4 at concurrency 1 and 2, and
pgBackRest (Debian package ``pgbackrest``) full backup and restore with compress-type=lz4
and process-max 1 and 2 against a posix repository on the same disk. Prints MB/s (of the
database's size), the ratio walg/pgBackRest, and the peak RSS summed over every process
of the walg command (and the peak of its largest single process).

    .venv/bin/python bench/backup.py [--scale 70] [--concurrency 1 2]

Delta backups (walg delta backup-push vs pgBackRest --type=incr after 1% and 10% row
updates, stored bytes vs the full) are benchmarked by bench/delta.py, which reuses this
file's helpers: ``.venv/bin/python bench/delta.py [--scale 70] [--processes 2]``.

Runs as root (clusters run as the postgres user, as in the tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.postgres import PG_USER, PgCluster

WALG = str(Path(sys.executable).parent / "wal-g")
RUNS = 3  # each figure is the median of this many runs


def tree_rss(root: int) -> tuple[int, int]:
    """(sum, max) RSS in bytes over ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        largest = max(largest, rss.get(pid, 0))
        stack += children.get(pid, [])
    return total, largest


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Run ``command``; return (seconds, peak summed RSS, peak single RSS). Dirty pages of
    earlier runs are flushed first, so that one run's writeback does not slow the next."""
    os.sync()
    time.sleep(0.5)
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0, 0]

    def sample() -> None:
        while proc.poll() is None:
            total, largest = tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.decode()}\n{err.decode()}")
    return elapsed, peak[0], peak[1]


def db_size(data: Path) -> int:
    """Bytes a base backup reads: PGDATA's files less what backups skip (pg_wal, ...)."""
    from walg.format.scan import scan

    return sum(e.size for e in scan(str(data)) if e.kind == "file")


def drop_restored(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def median_of(runs: int, once):  # type: ignore[no-untyped-def]
    """Run ``once`` ``runs`` times; return the run whose first figure is the median."""
    results = sorted((once() for _ in range(runs)), key=lambda r: r[0])
    return results[len(results) // 2]


def bench_walg(cluster: PgCluster, work: Path, n: int) -> tuple[float, float, int, int]:
    storage = work / f"walg-{n}"
    storage.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "PG"))},
        **cluster.env,
        "WALG_FILE_PREFIX": str(storage),
        "WALG_COMPRESSION_METHOD": "lz4",
        "WALG_ARCHIVE_CHECK": "false",  # its clusters do not archive to walg
        "WALG_UPLOAD_CONCURRENCY": str(n),
        "WALG_UPLOAD_DISK_CONCURRENCY": str(n),
        "WALG_DOWNLOAD_CONCURRENCY": str(n),
        "WALG_LOG_LEVEL": "ERROR",
    }

    def push_once() -> tuple[float, int, int]:
        shutil.rmtree(storage / "basebackups_005", ignore_errors=True)
        return timed([WALG, "backup-push", str(cluster.data_dir)], env)

    def fetch_once() -> tuple[float, int, int]:
        target = work / f"walg-restore-{n}"
        drop_restored(target)
        result = timed([WALG, "backup-fetch", str(target), "LATEST"], env)
        drop_restored(target)
        return result

    push, rss_sum, rss_max = median_of(RUNS, push_once)
    fetch = median_of(RUNS, fetch_once)[0]
    shutil.rmtree(storage)
    return push, fetch, rss_sum, rss_max


def bench_pgbackrest(cluster: PgCluster, n: int) -> tuple[float, float]:
    repo = cluster.make_dir(f"pgbr-repo-{n}")
    conf = cluster.base / f"pgbackrest-{n}.conf"
    conf.write_text(
        "[global]\n"
        f"repo1-path={repo}\nlog-path={cluster.base / 'log'}\nlock-path={cluster.base / 'run'}\n"
        f"compress-type=lz4\nprocess-max={n}\nstart-fast=y\narchive-check=n\nlog-level-console=warn\n"
        f"[bench]\npg1-path={cluster.data_dir}\npg1-socket-path={cluster.socket_dir}\n"
        f"pg1-port={cluster.port}\n"
    )
    os.chmod(conf, 0o644)
    base = ["runuser", "-u", PG_USER, "--", "pgbackrest", f"--config={conf}", "--stanza=bench"]
    env = dict(os.environ)
    subprocess.run([*base, "stanza-create"], check=True, capture_output=True, env=env)
    backup = median_of(RUNS, lambda: timed([*base, "--type=full", "backup"], env))[0]

    def restore_once() -> tuple[float, int, int]:
        target = cluster.make_dir(f"pgbr-restore-{n}")
        result = timed([*base, f"--pg1-path={target}", "restore"], env)
        drop_restored(target)
        return result

    restore = median_of(RUNS, restore_once)[0]
    shutil.rmtree(repo)
    return backup, restore


def row(what: str, mb: float, walg: float, reference: float) -> None:
    print(
        f"  {what:<8} walg {mb / walg:7.1f} MB/s ({walg:5.1f} s)   pgBackRest "
        f"{mb / reference:7.1f} MB/s ({reference:5.1f} s)   ratio {reference / walg:4.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cluster = PgCluster.create(settings={"checkpoint_timeout": "30min", "max_wal_size": "4GB"})
    try:
        cluster.start()
        cluster.pgbench_init(scale=args.scale)
        cluster.psql("CHECKPOINT")
        size = db_size(cluster.data_dir)
        mb = size / 1e6
        work = cluster.make_dir("work")
        print(
            f"database: pgbench scale {args.scale}, {mb:.0f} MB backed up; lz4; file storage; "
            f"{os.cpu_count()} cores; median of {RUNS} runs each"
        )
        for n in args.concurrency:
            push, fetch, rss_sum, rss_max = bench_walg(cluster, work, n)
            br_backup, br_restore = bench_pgbackrest(cluster, n)
            print(f"concurrency {n}:")
            row("backup", mb, push, br_backup)
            row("restore", mb, fetch, br_restore)
            print(
                f"  walg backup-push peak RSS: {rss_sum / 2**20:.0f} MiB summed over all "
                f"processes, {rss_max / 2**20:.0f} MiB largest process"
            )
    finally:
        cluster.cleanup()


if __name__ == "__main__":
    main()
