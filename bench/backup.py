"""backup-push / backup-fetch against pgBackRest in one run: throughput, CPU per GB, where
walg's CPU goes, and how it scales with workers.

For each data set (a pgbench database, which compresses ~9x; the same with pgbench_accounts
in 16 partitions, so that no one file holds most of the bytes; a table of random bytea,
which does not compress), on a throwaway cluster, it times:

- walg backup-push to file storage with lz4 at each worker count of the sweep (1..cores by
  default; WALG_UPLOAD_CONCURRENCY = WALG_UPLOAD_DISK_CONCURRENCY = n), with stage chaining
  (the default) and, at the largest count, without it (WALG_PIPELINE_CHAINING=false: a
  process per stage, the pipeline before chaining) as a same-run reference;
- pgBackRest (Debian package ``pgbackrest``) full backup, compress-type=lz4, process-max=n,
  to a posix repository on the same disk;
- backup-fetch and pgBackRest restore at the largest count.

CPU is user + system time of the command and every process it started and reaped (wait4),
per GB of the database's size. walg's per-stage CPU comes from its DEBUG log line "stage
graph done" (each worker measures the time its main thread spends in each stage's hooks;
``other[...]`` is the rest of those processes: channels, runtime, stage threads); the
parent's share is the command's CPU less its workers'. Scaling efficiency at n workers is
throughput(n) / (n * throughput(1)). Peak RSS is summed over the command's process tree.

    .venv/bin/python bench/backup.py [--scale 50] [--random-mb 1000] [--workers 1 2]
                                     [--sets pgbench random] [--runs 3]

Delta backups are benchmarked by bench/delta.py, which reuses this file's helpers. Runs as
root (clusters run as the postgres user, as in the tests). Absolute figures on a shared
machine vary; the ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.postgres import PG_USER, PgCluster

WALG = str(Path(sys.executable).parent / "wal-g")
RUNS = 3  # each figure is the median of this many runs


@dataclass
class Run:
    """One timed command: wall seconds, CPU seconds of its whole tree, peak RSS (summed,
    largest process), and its stderr."""

    seconds: float
    cpu: float
    rss_sum: int
    rss_max: int
    stderr: str = ""
    stages: dict[str, float] = field(default_factory=dict)


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


def run_timed(command: list[str], env: dict[str, str]) -> Run:
    """Run ``command`` and measure it. Dirty pages of earlier runs are flushed first, so
    that one run's writeback does not slow the next."""
    os.sync()
    time.sleep(0.5)
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0, 0]
    streams: dict[str, bytes] = {}
    finished = threading.Event()

    def sample() -> None:
        while not finished.wait(0.05):
            total, largest = tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)

    def drain(name: str, pipe) -> None:  # type: ignore[no-untyped-def]
        streams[name] = pipe.read()

    threads = [
        threading.Thread(target=sample, daemon=True),
        threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=drain, args=("err", proc.stderr), daemon=True),
    ]
    for thread in threads:
        thread.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    finished.set()
    for thread in threads:
        thread.join()
    err = streams.get("err", b"").decode(errors="replace")
    if proc.returncode != 0:
        out = streams.get("out", b"").decode(errors="replace")
        raise SystemExit(f"{' '.join(command)} failed:\n{out}\n{err}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, peak[0], peak[1], err)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, peak summed RSS, peak single RSS) of ``command`` (for bench/delta.py and
    bench/verify.py)."""
    run = run_timed(command, env)
    return run.seconds, run.rss_sum, run.rss_max


def stage_cpu(stderr: str) -> dict[str, float]:
    """CPU seconds by stage from walg's JSON "stage graph done" log lines (summed)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if "stage graph done" not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for stage, seconds in event.get("cpu_s", {}).items():
            found[stage] = found.get(stage, 0.0) + float(seconds)
    return found


def db_size(data: Path) -> int:
    """Bytes a base backup reads: PGDATA's files less what backups skip (pg_wal, ...)."""
    from walg.format.scan import scan

    return sum(e.size for e in scan(str(data)) if e.kind == "file")


def drop_restored(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def median_of(runs: int, once):  # type: ignore[no-untyped-def]
    """Run ``once`` ``runs`` times; return the run whose first figure is the median."""
    results = sorted((once() for _ in range(runs)), key=lambda r: r.seconds)
    return results[len(results) // 2]


def walg_env(cluster: PgCluster, storage: Path, n: int, chaining: bool = True) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "PG"))},
        **cluster.env,
        "WALG_FILE_PREFIX": str(storage),
        "WALG_COMPRESSION_METHOD": "lz4",
        "WALG_ARCHIVE_CHECK": "false",  # its clusters do not archive to walg
        "WALG_UPLOAD_CONCURRENCY": str(n),
        "WALG_UPLOAD_DISK_CONCURRENCY": str(n),
        "WALG_DOWNLOAD_CONCURRENCY": str(n),
        "WALG_PIPELINE_CHAINING": "true" if chaining else "false",
        "WALG_LOG_LEVEL": "DEBUG",  # for the "stage graph done" line
        "WALG_LOG_FORMAT": "json",
    }


def walg_push(cluster: PgCluster, storage: Path, n: int, chaining: bool, runs: int) -> Run:
    env = walg_env(cluster, storage, n, chaining)

    def once() -> Run:
        shutil.rmtree(storage / "basebackups_005", ignore_errors=True)
        run = run_timed([WALG, "backup-push", str(cluster.data_dir)], env)
        run.stages = stage_cpu(run.stderr)
        return run

    return median_of(runs, once)


def walg_fetch(cluster: PgCluster, storage: Path, work: Path, n: int, runs: int) -> Run:
    env = walg_env(cluster, storage, n)

    def once() -> Run:
        target = work / f"walg-restore-{n}"
        drop_restored(target)
        run = run_timed([WALG, "backup-fetch", str(target), "LATEST"], env)
        run.stages = stage_cpu(run.stderr)
        drop_restored(target)
        return run

    return median_of(runs, once)


def pgbackrest(cluster: PgCluster, n: int, runs: int, restore: bool) -> tuple[Run, Run | None]:
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
    backup = median_of(runs, lambda: run_timed([*base, "--type=full", "backup"], env))
    restored = None
    if restore:

        def restore_once() -> Run:
            target = cluster.make_dir(f"pgbr-restore-{n}")
            result = run_timed([*base, f"--pg1-path={target}", "restore"], env)
            drop_restored(target)
            return result

        restored = median_of(runs, restore_once)
    shutil.rmtree(repo)
    return backup, restored


def make_cluster(kind: str, scale: int, random_mb: int) -> PgCluster:
    cluster = PgCluster.create(settings={"checkpoint_timeout": "30min", "max_wal_size": "4GB"})
    cluster.start()
    if kind == "pgbench":
        cluster.pgbench_init(scale=scale)
    elif kind == "pgbench-partitioned":  # the same rows in 16 tables: no file dominates
        cluster._client(
            [
                str(cluster.bin / "pgbench"),
                "-i",
                "-q",
                "-s",
                str(scale),
                "--partitions=16",
                "postgres",
            ]
        )
    else:  # 4 KiB random values, stored uncompressed out of line (TOAST, storage EXTERNAL)
        rows = random_mb * (1 << 20) // 4096
        cluster.psql(
            "CREATE EXTENSION pgcrypto; CREATE TABLE noise (id int, b bytea); "
            "ALTER TABLE noise ALTER b SET STORAGE EXTERNAL; "
            "INSERT INTO noise SELECT g, gen_random_bytes(1024) || gen_random_bytes(1024) "
            f"|| gen_random_bytes(1024) || gen_random_bytes(1024) FROM generate_series(1, {rows}) g"
        )
    cluster.psql("CHECKPOINT")
    return cluster


def gb_cpu(run: Run, size: int) -> float:
    return run.cpu / (size / 1e9)


def report_set(kind: str, cluster: PgCluster, workers: list[int], runs: int) -> None:
    size = db_size(cluster.data_dir)
    mb = size / 1e6
    work = cluster.make_dir("work")
    top = max(workers)
    print(
        f"\n== {kind}: {mb:.0f} MB backed up; lz4; file storage; {os.cpu_count()} cores; "
        f"median of {runs} runs"
    )
    storage = work / "walg"
    storage.mkdir()
    pushes = {n: walg_push(cluster, storage, n, True, runs) for n in workers}
    unchained = walg_push(cluster, storage, top, False, runs)
    fetch = walg_fetch(cluster, storage, work, top, runs)
    shutil.rmtree(storage)
    peers = {n: pgbackrest(cluster, n, runs, restore=n == top) for n in workers}

    print(
        f"{'backup-push':<28}{'MB/s':>8}{'CPU-s/GB':>10}{'vs pgBR: speed':>16}"
        f"{'CPU':>7}{'parent CPU':>12}{'RSS MiB':>9}"
    )
    for n in workers:
        peer = peers[n][0]
        for label, run in ((f"walg n={n}", pushes[n]),) + (
            ((f"walg n={n} unchained", unchained),) if n == top else ()
        ):
            workers_cpu = sum(run.stages.values())
            parent = max(0.0, run.cpu - workers_cpu)
            print(
                f"  {label:<26}{mb / run.seconds:8.0f}{gb_cpu(run, size):10.2f}"
                f"{peer.seconds / run.seconds:15.2f}x{run.cpu / peer.cpu:6.2f}x"
                f"{100 * parent / run.cpu:11.1f}%{run.rss_sum / 2**20:9.0f}"
            )
        print(
            f"  {f'pgBackRest process-max={n}':<26}{mb / peer.seconds:8.0f}"
            f"{gb_cpu(peer, size):10.2f}"
        )
    base = mb / pushes[min(workers)].seconds
    print(
        "  scaling (walg, chained): "
        + ", ".join(
            f"n={n} {mb / pushes[n].seconds / (n / min(workers) * base):.0%}" for n in workers
        )
    )
    for label, run in ((f"walg n={top}", pushes[top]), (f"walg n={top} unchained", unchained)):
        total = sum(run.stages.values())
        parts = ", ".join(
            f"{k} {v / (size / 1e9):.2f}"
            for k, v in sorted(run.stages.items(), key=lambda kv: -kv[1])
        )
        parent = max(0.0, run.cpu - total)
        print(
            f"  CPU-s/GB by stage, {label}: {parts}; parent {parent / (size / 1e9):.2f}"
            f" ({parent:.2f} CPU-s in all)"
        )
    peer_restore = peers[top][1]
    assert peer_restore is not None
    print(f"{'restore':<28}")
    print(
        f"  {f'walg backup-fetch n={top}':<26}{mb / fetch.seconds:8.0f}"
        f"{gb_cpu(fetch, size):10.2f}{peer_restore.seconds / fetch.seconds:15.2f}x"
        f"{fetch.cpu / peer_restore.cpu:6.2f}x{'':>12}{fetch.rss_sum / 2**20:9.0f}"
    )
    print(
        f"  {'pgBackRest restore':<26}{mb / peer_restore.seconds:8.0f}"
        f"{gb_cpu(peer_restore, size):10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--random-mb", type=int, default=1000)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=list(range(1, (os.cpu_count() or 1) + 1))
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["pgbench", "random"],
        choices=["pgbench", "pgbench-partitioned", "random"],
    )
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    for kind in args.sets:
        cluster = make_cluster(kind, args.scale, args.random_mb)
        try:
            report_set(kind, cluster, sorted(args.workers), args.runs)
        finally:
            cluster.cleanup()


if __name__ == "__main__":
    main()
