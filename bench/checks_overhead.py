"""What the "exit 0 means restorable" checks cost: this tree against an earlier revision.

In one run, on one throwaway PostgreSQL 15 cluster archiving with this tree's wal-push:

1. one `wal-g wal-push` of a real 16 MiB segment (median of --pushes, the trees
   alternating segment by segment) to file storage: segment checks (size, first page
   header) and the lookups for copies;
2. backup-push of a pgbench database of --scale (median of --rounds): name claim, waiting
   for the stop segment to be archived and finding it in storage;
3. backup-fetch of that backup (median of --rounds): completeness checks before and after
   extracting, tablespace_map, atomic recovery files.

Each figure is taken with this tree and with ``--base`` (default: the commit before issue
13's work), checked out into a temporary worktree and run with the same interpreter
(``python -m walg``), one tree after the other, and printed with their ratio.

    .venv/bin/python bench/checks_overhead.py [--base fd14d15] [--scale 30] [--rounds 3]

Runs as root; PostgreSQL and archive_command run as the postgres user.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from servers.postgres import PgCluster  # noqa: E402
from wal import fake_pgdata, make_segments, time_pushes, wrapper  # noqa: E402


def tree_command(tree: Path) -> tuple[list[str], dict[str, str]]:
    """How to run wal-g from ``tree``: this interpreter with ``tree`` first on the path."""
    return [sys.executable, "-m", "walg"], {"PYTHONPATH": str(tree)}


def median_time(runs: int, action: Callable[[int], None]) -> float:
    times = []
    for n in range(runs):
        started = time.perf_counter()
        action(n)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="fd14d15")
    parser.add_argument("--scale", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=10)
    args = parser.parse_args()
    worktree = Path(tempfile.mkdtemp(prefix="walg-base-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree),
                    args.base], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(worktree / "walg")],
                   check=True)
    cluster = PgCluster.create(
        archive_command="/bin/true", settings={"wal_keep_size": "4GB", "max_wal_size": "4GB"}
    )
    try:
        measure(cluster, {"this tree": ROOT, f"base {args.base}": worktree}, args)
    finally:
        cluster.cleanup()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(worktree)], check=False)


def measure(cluster: PgCluster, trees: dict[str, Path], args: argparse.Namespace) -> None:
    cluster.start()
    archive = cluster.make_dir("archive")
    cluster.archive_command = f"{wrapper(cluster, 'walg', {'WALG_FILE_PREFIX': str(archive)})}" \
        " wal-push %p"
    cluster.configure()
    cluster.restart()
    segments = make_segments(cluster, args.pushes)
    cluster.pgbench_init(scale=args.scale)
    size = int(cluster.psql("SELECT pg_database_size('postgres')"))
    print(f"database: {size / 1e6:.0f} MB (pgbench scale {args.scale}); "
          f"{args.pushes} segments; {args.rounds} rounds")
    figures: dict[str, dict[str, float]] = {}
    wal = wal_push_medians(cluster, trees, segments)
    for label, tree in trees.items():
        command, extra = tree_command(tree)
        env = {**os.environ, **cluster.env, **extra, "WALG_FILE_PREFIX": str(archive),
               "WALG_LOG_LEVEL": "ERROR"}
        names: list[str] = []

        def backup(_: int, command: list[str] = command, env: dict[str, str] = env,
                   names: list[str] = names) -> None:
            cluster.psql("INSERT INTO pgbench_history VALUES (1, 1, 1, 1, now(), 'x')")
            names.append(run([*command, "backup-push", str(cluster.data_dir)], env))

        push = median_time(args.rounds, backup)

        def restore(n: int, command: list[str] = command, env: dict[str, str] = env,
                    names: list[str] = names) -> None:
            target = Path(tempfile.mkdtemp(prefix="walg-bench-fetch-"))
            try:
                run([*command, "backup-fetch", str(target / "data"), names[n]], env)
            finally:
                shutil.rmtree(target)

        fetch = median_time(args.rounds, restore)
        figures[label] = {"wal-push (ms)": wal[label] * 1000, "backup-push (s)": push,
                          "backup-fetch (s)": fetch}
    report(figures, size)


def wal_push_medians(
    cluster: PgCluster, trees: dict[str, Path], segments: list[Path]
) -> dict[str, float]:
    """Median seconds of one wal-push per tree, the trees alternating segment by segment
    (so that a busy moment of the machine weighs on both alike)."""
    pgdata = fake_pgdata(cluster)
    times: dict[str, list[float]] = {label: [] for label in trees}
    for segment in segments:
        for n, (label, tree) in enumerate(trees.items()):
            command, extra = tree_command(tree)
            env = {**os.environ, **extra, "WALG_LOG_LEVEL": "ERROR",
                   "WALG_FILE_PREFIX": str(cluster.make_dir(f"pushes-{n}"))}
            times[label].append(time_pushes([*command, "wal-push"], pgdata, [segment], env))
    return {label: statistics.median(values) for label, values in times.items()}


def report(figures: dict[str, dict[str, float]], size: int) -> None:
    (new_label, new), (old_label, old) = figures.items()
    print(f"{'':18} {new_label:>14} {old_label:>16} {'ratio':>7}")
    for what in new:
        print(f"{what:18} {new[what]:14.2f} {old[what]:16.2f} {new[what] / old[what]:7.2f}")
    for what in ("backup-push (s)", "backup-fetch (s)"):
        print(f"{what[:-4]} throughput: {size / new[what] / 1e6:.0f} MB/s vs "
              f"{size / old[what] / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main()
