"""Delta backups: walg delta backup-push against pgBackRest incremental backup, same change.

On one throwaway pgbench cluster (scale 70 is about 1.1 GB; autovacuum off, so that only
the updates below change the data), for each case:

1. a full walg backup-push (--full) and a full pgBackRest backup (--type=full);
2. the change: an UPDATE of pgbench_accounts (synchronous commit), then a seq scan (sets the
   hint bits, which are not WAL-logged) and CHECKPOINT;
3. a walg delta backup-push (WALG_DELTA_MAX_STEPS=1, so based on the full of step 1) and a
   pgBackRest incremental backup (--type=incr, based on its full of step 1).

Cases: 1% of the rows, a contiguous aid range; 1% of the rows at random (``random() < 0.01``,
which touches about half the table's pages: the bad case for page deltas; --no-random skips
it); 10% of the rows, a contiguous aid range. Each case starts from a fresh full of each tool,
so every delta/incremental is relative to a full. One run per case (each run changes the
data). Both tools use lz4 and the same process count (WALG_UPLOAD_CONCURRENCY and the disk /
download concurrencies = pgBackRest --process-max), file storage / posix repository on the
same disk.

Stored bytes: walg, the backup's CompressedSize from its sentinel (the tar parts as stored);
pgBackRest, the backup's repository delta from ``pgbackrest info --output=json``; ``du`` of
each backup's own folder is shown too. pgBackRest 2.45 here has no block incremental (2.46+):
its incremental stores every changed file whole.

After each case, both incrementals are restored (walg backup-fetch of the delta, which
restores the full's files and applies the increments; pgBackRest restore --set of the incr),
timed, and each restored base/ is compared byte for byte with the live PGDATA's base/ (the
cluster is idle after the CHECKPOINT, so they should be equal; pgBackRest's is the control).
PostgreSQL is not started on them.

    .venv/bin/python bench/delta.py [--scale 70] [--processes 2] [--no-random]

Runs as root (clusters and pgBackRest run as the postgres user, as in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backup import WALG, db_size, drop_restored, timed  # also puts tests/ on sys.path
from servers.postgres import PG_USER, PgCluster

SENTINEL_SUFFIX = "_backup_stop_sentinel.json"
BLOCK = 8192


@dataclass(frozen=True)
class Result:
    """One backup: wall seconds, stored bytes (as the tool reports them), du of its folder."""

    seconds: float
    stored: int
    du: int
    name: str


Pair = tuple[Result, Result]  # (walg, pgBackRest)


def du(path: Path) -> int:
    """Bytes of the regular files under ``path`` (apparent sizes)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class Walg:
    def __init__(self, cluster: PgCluster, storage: Path, processes: int) -> None:
        self.storage = storage
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "PG"))},
            **cluster.env,
            "WALG_FILE_PREFIX": str(storage),
            "WALG_COMPRESSION_METHOD": "lz4",
            "WALG_ARCHIVE_CHECK": "false",  # its clusters do not archive to walg
            "WALG_UPLOAD_CONCURRENCY": str(processes),
            "WALG_UPLOAD_DISK_CONCURRENCY": str(processes),
            "WALG_DOWNLOAD_CONCURRENCY": str(processes),
            "WALG_DELTA_MAX_STEPS": "1",
            "WALG_DELTA_ORIGIN": "LATEST",
            "WALG_LOG_LEVEL": "ERROR",
        }

    def _names(self) -> set[str]:
        folder = self.storage / "basebackups_005"
        if not folder.is_dir():
            return set()
        return {p.name[: -len(SENTINEL_SUFFIX)] for p in folder.glob("*" + SENTINEL_SUFFIX)}

    def sentinel(self, name: str) -> dict[str, Any]:
        path = self.storage / "basebackups_005" / (name + SENTINEL_SUFFIX)
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def files_metadata(self, name: str) -> dict[str, Any]:
        path = self.storage / "basebackups_005" / name / "files_metadata.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def push(self, pgdata: Path, *, full: bool) -> Result:
        before = self._names()
        command = [WALG, "backup-push", str(pgdata)] + (["--full"] if full else [])
        seconds = timed(command, self.env)[0]
        (name,) = self._names() - before
        stored = int(self.sentinel(name)["CompressedSize"])
        return Result(seconds, stored, du(self.storage / "basebackups_005" / name), name)

    def fetch(self, name: str, target: Path) -> float:
        return timed([WALG, "backup-fetch", str(target), name], self.env)[0]


class PgBackRest:
    def __init__(self, cluster: PgCluster, processes: int) -> None:
        self.repo = cluster.make_dir("pgbr-repo")
        conf = cluster.base / "pgbackrest.conf"
        conf.write_text(
            "[global]\n"
            f"repo1-path={self.repo}\nlog-path={cluster.base / 'log'}\n"
            f"lock-path={cluster.base / 'run'}\ncompress-type=lz4\nprocess-max={processes}\n"
            "start-fast=y\narchive-check=n\nlog-level-console=warn\n"
            f"[bench]\npg1-path={cluster.data_dir}\npg1-socket-path={cluster.socket_dir}\n"
            f"pg1-port={cluster.port}\n"
        )
        os.chmod(conf, 0o644)
        self.base = ["runuser", "-u", PG_USER, "--", "pgbackrest", f"--config={conf}"]
        self.base.append("--stanza=bench")
        self.env = dict(os.environ)
        subprocess.run([*self.base, "stanza-create"], check=True, capture_output=True)

    def backup(self, kind: str) -> Result:
        seconds = timed([*self.base, f"--type={kind}", "backup"], self.env)[0]
        info = subprocess.run(
            [*self.base, "--output=json", "info"], check=True, capture_output=True, text=True
        )
        newest = json.loads(info.stdout)[0]["backup"][-1]
        if newest["type"] != kind:
            raise SystemExit(f"pgBackRest's newest backup is {newest['type']}, not {kind}")
        label = newest["label"]
        stored = int(newest["info"]["repository"]["delta"])
        return Result(seconds, stored, du(self.repo / "backup" / "bench" / label), label)

    def restore(self, label: str, target: Path) -> float:
        command = [*self.base, f"--pg1-path={target}", f"--set={label}", "restore"]
        return timed(command, self.env)[0]


def settle(cluster: PgCluster) -> None:
    """Set hint bits on every row (seq scan) and write everything out, so that the cluster
    is idle and both tools see the same files."""
    cluster.psql("SELECT count(*) FROM pgbench_accounts")
    cluster.psql("CHECKPOINT")
    time.sleep(2.5)  # walg skips unchanged files only when their mtime is 2 s older


def mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def report(what: str, full: Pair, delta: Pair) -> None:
    (wf, bf), (wd, bd) = full, delta
    print(f"{what}")
    print(f"  {'':<6} {'walg':>30}   {'pgBackRest':>30}   walg/pgBackRest")
    print(
        f"  {'':<6} {'s':>7} {'stored':>11} {'(du)':>10}   {'s':>7} {'stored':>11} {'(du)':>10}"
        f"   {'time':>6} {'bytes':>6}"
    )
    for label, w, b in (("full", wf, bf), ("delta", wd, bd)):
        print(
            f"  {label:<6} {w.seconds:7.1f} {mb(w.stored)} ({w.du / 1e6:7.1f})   "
            f"{b.seconds:7.1f} {mb(b.stored)} ({b.du / 1e6:7.1f})"
            f"   {w.seconds / b.seconds:5.2f}x {w.stored / max(1, b.stored):5.2f}x"
        )
    print(
        f"  delta / full stored: walg {wd.stored / wf.stored:6.1%}   "
        f"pgBackRest incr {bd.stored / bf.stored:6.1%}"
    )
    print(
        f"  delta / full time:   walg {wd.seconds / wf.seconds:6.1%}   "
        f"pgBackRest incr {bd.seconds / bf.seconds:6.1%}"
    )


def describe_delta(walg: Walg, name: str, base: str) -> str:
    sentinel = walg.sentinel(name)
    if sentinel.get("DeltaFrom") != base:
        raise SystemExit(
            f"walg backup {name} has DeltaFrom {sentinel.get('DeltaFrom')!r}, "
            f"expected the full {base}"
        )
    files = walg.files_metadata(name)["Files"].values()
    incremented = sum(1 for f in files if f.get("IsIncremented"))
    skipped = sum(1 for f in files if f.get("IsSkipped"))
    return (
        f"  walg delta {name}: DeltaFrom the full, {incremented} files as increments, "
        f"{skipped} skipped unchanged, {len(files) - incremented - skipped} whole; "
        f"UncompressedSize {int(sentinel['UncompressedSize']) / 1e6:.1f} MB"
    )


@dataclass(frozen=True)
class Lsns:
    """A walg delta's DeltaLSN (its base's start) and its own start LSN."""

    base: int
    start: int


def page_lsn(page: bytes) -> int:
    high, low = struct.unpack_from("<II", page)
    return int(high) << 32 | int(low)


def page_diff(live: Path, restored: Path, lsns: Lsns | None) -> str:
    """How two copies of a relation file differ, page by page. With ``lsns`` (a walg delta),
    each differing page is classed by its pd_lsn, live and restored: live above the delta's
    start LSN, it changed after the delta began (WAL replay redoes it); the same LSN, it
    changed without WAL (hint bits: a page-LSN delta cannot see that, as in WAL-G; PostgreSQL
    sets them again); else the restore holds an older page than it should: a walg bug."""
    a, b = live.read_bytes(), restored.read_bytes()
    if len(a) != len(b):
        return f"sizes {len(a)} live, {len(b)} restored"
    pages = [n for n in range(0, len(a), BLOCK) if a[n : n + BLOCK] != b[n : n + BLOCK]]
    text = f"{len(pages)} of {len(a) // BLOCK} pages differ"
    if lsns is None or not pages:
        return text
    after, no_wal, wrong = "after the delta's start", "same LSN (hint bits)", "OLDER PAGE (BUG?)"
    classes = dict.fromkeys((after, no_wal, wrong), 0)
    for n in pages:
        lsn, was = page_lsn(a[n : n + BLOCK]), page_lsn(b[n : n + BLOCK])
        kind = after if lsn > lsns.start else no_wal if lsn == was else wrong
        classes[kind] += 1
        if kind == wrong and classes[kind] <= 3:
            text += f" [block {n // BLOCK}: live LSN {lsn:X}, restored {was:X}]"
    return text + ": " + ", ".join(f"{k} {v}" for k, v in classes.items() if v)


def compare_base(
    restored: Path, live: Path, lsns: Lsns | None, relname: Callable[[str], str]
) -> str:
    """Compare every file under base/ of the restored and the live data directory (but
    pg_internal.init, which backups leave out, as pg_basebackup and WAL-G do)."""
    names = {
        p.relative_to(live)
        for p in (live / "base").rglob("*")
        if p.is_file() and p.name != "pg_internal.init"
    }
    got = {p.relative_to(restored) for p in (restored / "base").rglob("*") if p.is_file()}
    missing, extra = sorted(names - got), sorted(got - names)
    differ = []
    for name in sorted(names & got):
        a, b = live / name, restored / name
        if a.stat().st_size != b.stat().st_size or a.read_bytes() != b.read_bytes():
            differ.append(f"{name} ({relname(name.name)}: {page_diff(a, b, lsns)})")
    ok = not (missing or extra or differ)
    text = (
        f"{len(names & got)} of {len(names)} files under base/ present, "
        f"{len(names & got) - len(differ)} byte-identical to the live PGDATA"
    )
    if missing or extra:
        text += f"; missing {[str(m) for m in missing[:5]]}, extra {[str(e) for e in extra[:5]]}"
    if differ:
        text += "; differ: " + "; ".join(differ[:10])
    return ("OK: " if ok else "") + text


def restore(cluster: PgCluster, work: Path, walg: Walg, pgbr: PgBackRest, delta: Pair) -> None:
    """Restore both incrementals, timed, and compare each restored base/ with the live one."""
    target = work / "walg-restore"
    fetch = walg.fetch(delta[0].name, target)
    sentinel = walg.sentinel(delta[0].name)
    lsns = Lsns(int(sentinel["DeltaLSN"]), int(sentinel["LSN"]))

    def relname(filenode: str) -> str:
        node = filenode.split(".")[0].split("_")[0]
        found = cluster.psql(
            f"SELECT relname FROM pg_class WHERE pg_relation_filenode(oid) = {node}"
        )
        return found or "?"

    check = compare_base(target, cluster.data_dir, lsns, relname)
    drop_restored(target)
    br_target = cluster.make_dir("pgbr-restore")
    br_restore = pgbr.restore(delta[1].name, br_target)
    control = compare_base(br_target, cluster.data_dir, None, relname)
    drop_restored(br_target)
    print(
        f"  restore of the delta/incr: walg backup-fetch {fetch:.1f} s, pgBackRest restore "
        f"{br_restore:.1f} s, walg/pgBackRest {fetch / br_restore:.2f}x"
    )
    print(f"  walg restored delta vs live PGDATA: {check}")
    print(f"  pgBackRest restored incr vs live PGDATA (control): {control}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-random", action="store_true", help="skip the random 1%% case")
    args = parser.parse_args()
    settings = {"checkpoint_timeout": "30min", "max_wal_size": "4GB", "autovacuum": "off"}
    cluster = PgCluster.create(settings=settings)
    try:
        cluster.start()
        started = time.perf_counter()
        cluster.pgbench_init(scale=args.scale)
        rows = args.scale * 100_000
        # hint bits on every table, catalogs too: flush the WAL (CHECKPOINT), so that the
        # asynchronous commits of pgbench -i count as committed, then VACUUM
        cluster.psql("CHECKPOINT")
        cluster.psql("VACUUM")
        settle(cluster)
        work = cluster.make_dir("work")
        walg = Walg(cluster, work / "walg", args.processes)
        pgbr = PgBackRest(cluster, args.processes)
        print(
            f"database: pgbench scale {args.scale} ({rows} rows in pgbench_accounts), "
            f"{db_size(cluster.data_dir) / 1e6:.0f} MB backed up; lz4; {args.processes} "
            f"processes each; file storage / posix repo on one disk; {os.cpu_count()} cores; "
            "one run per case; autovacuum off"
        )
        print(
            "stored = walg sentinel CompressedSize / pgBackRest info repository delta; "
            "(du) = the backup's own folder; ratios walg/pgBackRest (>1: walg slower/larger)"
        )
        cases = [("1% of rows, contiguous aid range", f"aid BETWEEN 1 AND {rows // 100}")]
        if not args.no_random:
            cases.append(("1% of rows at random", "random() < 0.01"))
        cases.append(("10% of rows, contiguous aid range", f"aid BETWEEN 1 AND {rows // 10}"))
        for what, where in cases:
            sizes = cluster.psql(
                "SELECT pg_relation_size('pgbench_accounts') / 1e6, "
                "pg_relation_size('pgbench_accounts_pkey') / 1e6"
            ).split("|")
            full = (walg.push(cluster.data_dir, full=True), pgbr.backup("full"))
            # synchronous commit: settle()'s scan can set the hint bits only once the
            # commit is flushed (the cluster runs with synchronous_commit=off)
            updated = cluster.psql(
                "SET synchronous_commit = on; WITH u AS (UPDATE pgbench_accounts "
                f"SET abalance = abalance + 1 WHERE {where} RETURNING 1) SELECT count(*) FROM u"
            )
            settle(cluster)
            delta = (walg.push(cluster.data_dir, full=False), pgbr.backup("incr"))
            print()
            report(
                f"{what}: UPDATE pgbench_accounts ... WHERE {where} ({updated} rows)", full, delta
            )
            print(describe_delta(walg, delta[0].name, full[0].name))
            print(
                f"  before the update: pgbench_accounts {float(sizes[0]):.0f} MB, its primary key "
                f"{float(sizes[1]):.0f} MB (pgBackRest's incr stores each changed file whole)"
            )
            restore(cluster, work, walg, pgbr, delta)
        print(f"total bench time {time.perf_counter() - started:.0f} s")
    finally:
        cluster.cleanup()


if __name__ == "__main__":
    main()
