"""WAL path figures: walg with a stock configuration beside pgBackRest (and barman-cloud).

In one run, on throwaway PostgreSQL clusters, every tool run as the postgres user, walg as a
DBA configures it: ``archive_command = '<wrapper> wal-push %p'``, ``restore_command =
'<wrapper> wal-fetch %f %p'``, the wrapper exporting only the storage (file, or S3 on a local
moto server), lz4 and the log level. For walg the first (cold) call is shown beside medians;
``wal-g daemon`` (opt-in, WALG_DAEMON_SOCKET) is shown as a second column where it applies.

(a) one wal-push of a real 16 MiB segment, median of --pushes: walg vs pgBackRest
    archive-push (posix repository, lz4);
(b) a backlog of --backlog segments made while archiving was off (archive_command = ''),
    the same segments for every tool (copies of one stopped cluster): time from the reload
    that sets archive_command until PostgreSQL marked them all done; walg vs pgBackRest
    archive-push sync and async (archive-async=y, spool-path, process-max=2);
(c) replay after a restore: one pg_basebackup copy, then --replay segments of WAL archived
    by both tools; each restore starts a copy of that base with recovery.signal and only
    restore_command set, timed from `pg_ctl start` until pg_is_in_recovery() is false (it
    replays to the end of the archive and promotes); walg vs pgBackRest archive-get sync
    and async;
(d) one wal-push to S3 (moto) vs barman-cloud-wal-archive, if barman-cloud is installed in
    --barman-venv (skipped with a note otherwise);
plus wal-fetch segments/s one segment at a time (--fetch-segments) and sustained archiving
under bulk inserts (--seconds), as before. A summary with ratios ends the output.

    .venv/bin/python bench/wal.py [--pushes 10] [--backlog 55] [--replay 38]
        [--fetch-segments 32] [--seconds 15] [--rounds 1] [--no-s3] [--barman-venv /opt/barman-venv]

Runs as root. Nothing carries over between scenarios: each has its own PGDATA (or copy),
storage and repository, and whatever walg left running in the background for a PGDATA
(found by the files it holds under pg_wal/walg_data or pg_wal/.wal-g) is stopped after it.
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
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wal_common
from wal_common import (
    FILLER,
    WALG,
    PgCluster,
    as_postgres,
    clean_env,
    clone,
    fake_pgdata,
    fill_until,
    has_daemon,
    owned_dir,
    pgbackrest,
    postgres_ids,
    ready,
    reload,
    remove,
    run,
    stanza_create,
    start_daemon,
    stop_process,
    stop_walg_helpers,
    wait_archived,
    wait_promoted,
    wait_released,
    walg_wrapper,
)

SETTINGS = {"max_wal_size": "4GB", "wal_keep_size": "0", "checkpoint_timeout": "30min"}


@dataclass
class Row:
    """One line of the summary: a time (lower is better) or a rate (higher is better)."""

    work: str
    unit: str
    walg: float
    walg_note: str = ""
    daemon: float | None = None
    peers: list[tuple[str, float]] = field(default_factory=list)

    @property
    def rate(self) -> bool:
        return self.unit.endswith("/s")

    def time_ratio(self, walg: float, peer: float) -> float:
        """walg's time over the peer's for the same work (below 1: walg is faster)."""
        return peer / walg if self.rate else walg / peer

    def show(self, value: float) -> str:
        if self.rate:
            return f"{value:.1f} {self.unit}"
        return f"{value * 1000:.0f} ms" if self.unit == "ms" else f"{value:.2f} s"


RESULTS: list[Row] = []


# --- (a) and (d): one push ----------------------------------------------------------------


@dataclass
class Pusher:
    """One way to push a segment: ``command + [path]`` run with cwd ``pgdata`` (the path
    relative to it as PostgreSQL passes %p; absolute for pgBackRest, whose pg1-path is the
    source cluster's, and barman-cloud)."""

    command: list[str]
    pgdata: Path
    env: dict[str, str] | None = None
    absolute: bool = False

    def push(self, segment: Path) -> float:
        """Wall time (s) of pushing a copy of ``segment`` placed in pg_wal, as PostgreSQL's
        archiver does it: ``archive_status/<name>.ready`` is written, archive_command runs
        at once, and on its success ``.ready`` becomes ``.done``."""
        path = self.pgdata / "pg_wal" / segment.name
        shutil.copy(segment, path)
        os.chown(path, *postgres_ids())
        status = self.pgdata / "pg_wal" / "archive_status"
        (status / f"{segment.name}.ready").touch()
        argument = str(path) if self.absolute else f"pg_wal/{segment.name}"
        started = time.perf_counter()
        run([*self.command, argument], cwd=self.pgdata, env=self.env)
        elapsed = time.perf_counter() - started
        (status / f"{segment.name}.ready").rename(status / f"{segment.name}.done")
        path.unlink()
        return elapsed


def take_turns(pushers: dict[str, Pusher], segments: list[Path]) -> dict[str, list[float]]:
    """Push every segment with each pusher in turn (segment by segment, so that a change in
    the shared machine's load hits all alike); then stop what walg left in the background.
    Prints and returns each pusher's times."""
    times: dict[str, list[float]] = {label: [] for label in pushers}
    for segment in segments:
        for label, pusher in pushers.items():
            times[label].append(pusher.push(segment))
    for label, pusher in pushers.items():
        stop_walg_helpers(pusher.pgdata)
        print(f"  {label:<31} {first_and_median(times[label])}")
    return times


def ms(value: float) -> str:
    return f"{value * 1000:6.1f} ms"


def first_and_median(times: list[float]) -> str:
    return f"first {ms(times[0])}, median {ms(statistics.median(times))}"


def first(times: list[float]) -> str:
    return f"first call {ms(times[0]).strip()}"


def runuser_cost(runs: int = 10) -> float:
    """Median wall time of `runuser -u postgres -- true`: part of every push figure."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(as_postgres(["true"]), check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_push(work: Path, segments: list[Path], pgbr: list[str], daemon: bool) -> None:
    print(
        f"(a) one 16 MiB wal-push, {len(segments)} segments, the tools taking turns; every "
        f"figure includes {runuser_cost() * 1000:.1f} ms of `runuser -u postgres`:"
    )
    store = {"WALG_FILE_PREFIX": str(owned_dir(work / "push-store"))}
    wrapper = walg_wrapper(work, "push-walg.sh", store)
    pushers = {
        "walg, stock config": Pusher(
            as_postgres([wrapper, "wal-push"]), fake_pgdata(work, "push-walg")
        )
    }
    process = None
    if daemon:
        settings = {"WALG_FILE_PREFIX": str(owned_dir(work / "push-daemon-store"))}
        process, socket_path = start_daemon(work / "push-daemon", settings)
        script = walg_wrapper(
            work, "push-daemon.sh", {**settings, "WALG_DAEMON_SOCKET": socket_path}
        )
        pushers["walg via `wal-g daemon`"] = Pusher(
            as_postgres([script, "wal-push"]), fake_pgdata(work, "push-daemon")
        )
    pushers["pgBackRest archive-push"] = Pusher(
        as_postgres([*pgbr, "archive-push"]), fake_pgdata(work, "push-pgbr"), absolute=True
    )
    try:
        times = take_turns(pushers, segments)
    finally:
        if process is not None:
            stop_process(process)
    walg = times["walg, stock config"]
    row = Row("one wal-push (median)", "ms", statistics.median(walg), first(walg))
    if daemon:
        row.daemon = statistics.median(times["walg via `wal-g daemon`"])
    row.peers.append(
        ("pgBackRest archive-push", statistics.median(times["pgBackRest archive-push"]))
    )
    RESULTS.append(row)


S3_BUCKET = "walbench"


def s3_settings(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_REGION": "us-east-1",
    }


def barman_compression(archive: str) -> list[str]:
    """lz4 if this barman-cloud-wal-archive has it (as walg uses), else snappy, else none."""
    usage = subprocess.run([archive, "--help"], capture_output=True, text=True).stdout
    for option in ("--lz4", "--snappy"):
        if option in usage:
            return [option]
    return []


def bench_s3_push(work: Path, segments: list[Path], endpoint: str, barman_venv: Path) -> None:
    print("(d) one wal-push to S3 (moto server on 127.0.0.1), the tools taking turns:")
    aws = s3_settings(endpoint)
    wrapper = walg_wrapper(work, "push-s3.sh", {"WALG_S3_PREFIX": f"s3://{S3_BUCKET}/walg", **aws})
    pushers = {
        "walg, stock config": Pusher(
            as_postgres([wrapper, "wal-push"]), fake_pgdata(work, "push-s3")
        )
    }
    archive = barman_venv / "bin" / "barman-cloud-wal-archive"
    label = ""
    if archive.exists():
        compression = barman_compression(str(archive))
        command = [str(archive), "--endpoint-url", endpoint, *compression]
        command += [f"s3://{S3_BUCKET}/barman", "bench"]
        label = f"barman-cloud-wal-archive {' '.join(compression) or '(no compression)'}"
        pushers[label] = Pusher(
            as_postgres(command),
            fake_pgdata(work, "push-barman"),
            env={**clean_env(), **aws},
            absolute=True,
        )
    times = take_turns(pushers, segments)
    walg = times["walg, stock config"]
    row = Row("wal-push to S3 (median)", "ms", statistics.median(walg), first(walg))
    if label:
        row.peers.append((label, statistics.median(times[label])))
    else:
        print(f"  barman-cloud-wal-archive: skipped, {archive} not found (--barman-venv)")
    RESULTS.append(row)


# --- (b) backlog --------------------------------------------------------------------------


def backlog_run(
    source: Path, names: set[str], setup: Callable[[PgCluster], str], after: Callable[[], None]
) -> float:
    """Seconds from the reload that sets archive_command (``setup(cluster)``'s answer) on a
    copy of ``source`` until all of ``names`` are archived."""
    cluster = clone(source, archive_command="", settings=SETTINGS)
    try:
        cluster.start()
        command = setup(cluster)
        started = time.perf_counter()
        reload(cluster, command)
        wait_archived(cluster, names)
        elapsed = time.perf_counter() - started
        failed = int(cluster.psql("SELECT failed_count FROM pg_stat_archiver"))
        if failed:
            print(f"    ({failed} archive_command failures on the way)")
        return elapsed
    finally:
        after()
        if cluster.running:
            cluster.stop()
        stop_walg_helpers(cluster.data_dir)
        cluster.cleanup()


def bench_backlog(work: Path, source: Path, names: set[str], daemon: bool, rounds: int = 1) -> None:
    """Each tool in turn, ``rounds`` times (fresh storage and repository every time); the
    median of each tool's rounds."""
    count = len(names)
    print(f"(b) archiving a backlog of {count} segments (same segments for every tool):")

    def walg(name: str, daemon: bool) -> float:
        settings = {"WALG_FILE_PREFIX": str(owned_dir(work / f"{name}-store"))}
        process = None
        if daemon:
            process, socket_path = start_daemon(work / f"{name}-daemon", settings)
            settings["WALG_DAEMON_SOCKET"] = socket_path
        command = f"{walg_wrapper(work, f'{name}.sh', settings)} wal-push %p"
        after = (lambda: stop_process(process)) if process else (lambda: None)
        return backlog_run(source, names, lambda cluster: command, after)

    def pgbr(name: str, asynchronous: bool) -> float:
        spool = work / f"{name}-spool" if asynchronous else None

        def setup(cluster: PgCluster) -> str:
            command = pgbackrest(
                work / f"{name}.conf",
                repo=work / f"{name}-repo",
                pgdata=cluster.data_dir,
                cluster=cluster,
                spool=spool,
            )
            stanza_create(command)
            return " ".join(command) + " archive-push %p"

        return backlog_run(source, names, setup, lambda: wait_released(spool))

    variants: dict[str, Callable[[str], float]] = {
        "walg, stock config": lambda name: walg(name, False)
    }
    if daemon:
        variants["walg via `wal-g daemon`"] = lambda name: walg(name, True)
    variants["pgBackRest sync"] = lambda name: pgbr(name, False)
    variants["pgBackRest async"] = lambda name: pgbr(name, True)
    results = run_rounds(variants, "backlog", rounds)
    for label, seconds in results.items():
        print(f"  {label:<27} {count / seconds:6.1f} segments/s ({seconds:5.2f} s)")
    RESULTS.append(
        Row(
            f"backlog of {count} segments",
            "segments/s",
            count / results["walg, stock config"],
            daemon=count / results["walg via `wal-g daemon`"] if daemon else None,
            peers=[
                (f"pgBackRest {m}", count / results[f"pgBackRest {m}"]) for m in ("sync", "async")
            ],
        )
    )


def run_rounds(
    variants: dict[str, Callable[[str], float]], prefix: str, rounds: int
) -> dict[str, float]:
    """Run each variant in turn (given a fresh name for its files), ``rounds`` times;
    the median of each variant's seconds."""
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    for number in range(rounds):
        for index, (label, variant) in enumerate(variants.items()):
            seconds[label].append(variant(f"{prefix}-{number}-{index}"))
    return {label: statistics.median(values) for label, values in seconds.items()}


# --- (c) replay ---------------------------------------------------------------------------


@dataclass
class ReplaySource:
    """One base backup (a pg_basebackup copy, without WAL) and the WAL after it, archived by
    walg (``walg_store``) and by pgBackRest (``pgbr_repo``) from the same archive_command."""

    base: Path
    walg_store: Path
    pgbr_repo: Path
    segments: int
    rows: str


def make_replay_source(work: Path, segments: int) -> ReplaySource:
    source = PgCluster.create(archive_command="", settings=SETTINGS)
    try:
        source.start()
        store = owned_dir(work / "replay-store")
        wrapper = walg_wrapper(work, "replay-push.sh", {"WALG_FILE_PREFIX": str(store)})
        pgbr = pgbackrest(
            work / "replay-push.conf",
            repo=work / "replay-repo",
            pgdata=source.data_dir,
            cluster=source,
        )
        stanza_create(pgbr)
        reload(source, f"{wrapper} wal-push %p && {' '.join(pgbr)} archive-push %p")
        source.psql("CREATE TABLE filler (id bigint, a text, b text)")
        source.psql(FILLER)
        base = work / "replay-base"
        command = [str(source.bin / "pg_basebackup"), "-D", str(base), "-X", "none", "-c", "fast"]
        command += ["-h", str(source.socket_dir), "-p", str(source.port), "-U", "postgres"]
        owned_dir(base)
        run(as_postgres(command))
        label = (base / "backup_label").read_text()
        first = label.split("(file ", 1)[1][:24]  # START WAL LOCATION: ... (file <name>)
        fill_until(source, segments - 1)
        source.psql("SELECT pg_switch_wal()")
        wait_archived(source, ready(source.data_dir))
        last = source.psql("SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
        rows = source.psql("SELECT count(*) FROM filler")
        source.stop()
    finally:
        stop_walg_helpers(source.data_dir)
        source.cleanup()
    count = int(last[8:], 16) - int(first[8:], 16) + 1  # same timeline, no wrap here
    return ReplaySource(base, store, work / "replay-repo", count, rows)


def replay_run(
    source: ReplaySource, restore: Callable[[PgCluster], str], after: Callable[[], None]
) -> float:
    """Seconds from `pg_ctl start` of a copy of the base (recovery.signal, restore_command =
    ``restore(cluster)``, no target) until it promoted; checks that every row is there."""
    cluster = clone(source.base, archive_command=None, settings=SETTINGS)
    try:
        (cluster.data_dir / "recovery.signal").touch()
        os.chown(cluster.data_dir / "recovery.signal", *postgres_ids())
        cluster.restore_command = restore(cluster)
        cluster.configure()
        started = time.perf_counter()
        cluster.start()
        wait_promoted(cluster)
        elapsed = time.perf_counter() - started
        rows = cluster.psql("SELECT count(*) FROM filler")
        if rows != source.rows:
            raise RuntimeError(f"restored {rows} rows, the source had {source.rows}")
        return elapsed
    finally:
        after()
        if cluster.running:
            cluster.stop()
        stop_walg_helpers(cluster.data_dir)
        cluster.cleanup()


def bench_replay(work: Path, replay_segments: int, daemon: bool, rounds: int = 1) -> None:
    source = make_replay_source(work, replay_segments)
    print(
        f"(c) replaying {source.segments} archived segments after a restore of one base "
        "(pg_ctl start to promotion):"
    )

    def walg(name: str, daemon: bool) -> float:
        settings = {"WALG_FILE_PREFIX": str(source.walg_store)}
        process = None
        if daemon:
            process, socket_path = start_daemon(work / f"{name}-daemon", settings)
            settings["WALG_DAEMON_SOCKET"] = socket_path
        command = f"{walg_wrapper(work, f'{name}.sh', settings)} wal-fetch %f %p"
        after = (lambda: stop_process(process)) if process else (lambda: None)
        return replay_run(source, lambda cluster: command, after)

    def pgbr(name: str, asynchronous: bool) -> float:
        spool = work / f"{name}-spool" if asynchronous else None

        def restore(cluster: PgCluster) -> str:
            command = pgbackrest(
                work / f"{name}.conf", repo=source.pgbr_repo, pgdata=cluster.data_dir, spool=spool
            )
            return " ".join(command) + ' archive-get %f "%p"'

        return replay_run(source, restore, lambda: wait_released(spool))

    variants: dict[str, Callable[[str], float]] = {
        "walg, stock config": lambda name: walg(name, False)
    }
    if daemon:
        variants["walg via `wal-g daemon`"] = lambda name: walg(name, True)
    variants["pgBackRest archive-get sync"] = lambda name: pgbr(name, False)
    variants["pgBackRest archive-get async"] = lambda name: pgbr(name, True)
    results = run_rounds(variants, "replay", rounds)
    for label, seconds in results.items():
        print(f"  {label:<28} {seconds:6.2f} s ({source.segments / seconds:5.1f} segments/s)")
    remove(source.base)
    RESULTS.append(
        Row(
            f"replay of {source.segments} segments",
            "s",
            results["walg, stock config"],
            daemon=results.get("walg via `wal-g daemon`"),
            peers=[
                (f"pgBackRest {m}", results[f"pgBackRest archive-get {m}"])
                for m in ("sync", "async")
            ],
        )
    )


# --- wal-fetch throughput, sustained archiving ----------------------------------------------


def bench_fetch(work: Path, segments: list[Path], pgbr: list[str], daemon: bool) -> None:
    """Segments/s of wal-fetch called once per segment as a recovery calls it (cwd PGDATA,
    %p = pg_wal/RECOVERYXLOG), each variant in a fresh PGDATA."""
    store = owned_dir(work / "fetch-store")
    settings = {"WALG_FILE_PREFIX": str(store)}
    wrapper = walg_wrapper(work, "fetch.sh", settings)
    pgdata = fake_pgdata(work, "fetch-push")
    for segment in segments:
        Pusher(as_postgres([wrapper, "wal-push"]), pgdata).push(segment)
        Pusher(as_postgres([*pgbr, "archive-push"]), pgdata, absolute=True).push(segment)
    stop_walg_helpers(pgdata)
    mib = len(segments) * 16
    print(f"wal-fetch of {len(segments)} segments one at a time ({mib} MiB):")

    def fetches(label: str, command: list[str], absolute: bool = False) -> None:
        target = fake_pgdata(work, f"fetch-{label.split()[0]}-{len(os.listdir(work))}")
        # pgBackRest wants cwd = its pg1-path (the source's) for a relative %p: absolute here
        dest = str(target / "pg_wal" / "RECOVERYXLOG") if absolute else "pg_wal/RECOVERYXLOG"
        started = time.perf_counter()
        for segment in segments:
            run(as_postgres([*command, segment.name, dest]), cwd=None if absolute else target)
        elapsed = time.perf_counter() - started
        stop_walg_helpers(target)
        print(
            f"  {label:<27} {len(segments) / elapsed:6.1f} segments/s ({mib / elapsed:6.1f} MiB/s)"
        )

    fetches("walg, stock config", [wrapper, "wal-fetch"])
    fetches("walg --no-prefetch", [wrapper, "wal-fetch", "--no-prefetch"])
    if daemon:
        process, socket_path = start_daemon(work / "fetch-daemon", settings)
        try:
            script = walg_wrapper(
                work, "fetch-daemon.sh", {**settings, "WALG_DAEMON_SOCKET": socket_path}
            )
            fetches("walg via `wal-g daemon`", [script, "wal-fetch"])
        finally:
            stop_process(process)
    fetches("pgBackRest archive-get sync", [*pgbr, "archive-get"], absolute=True)


def bench_sustained(work: Path, seconds: int) -> None:
    """archive_command = walg wal-push while bulk inserts write WAL as fast as they can."""
    cluster = PgCluster.create(archive_command="", settings=SETTINGS)
    try:
        store = owned_dir(work / "sustained-store")
        wrapper = walg_wrapper(work, "sustained.sh", {"WALG_FILE_PREFIX": str(store)})
        cluster.archive_command = f"{wrapper} wal-push %p"
        cluster.configure()
        cluster.start()
        cluster.psql("CREATE TABLE filler (id bigint, a text, b text)")
        start_lsn = cluster.psql("SELECT pg_current_wal_lsn()")
        before = int(cluster.psql("SELECT archived_count FROM pg_stat_archiver"))
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            cluster.psql(FILLER)
        elapsed = time.monotonic() - started
        written = float(
            cluster.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}') / 16777216")
        )
        archived = int(cluster.psql("SELECT archived_count FROM pg_stat_archiver")) - before
        waiting = len(ready(cluster.data_dir))
        failed = cluster.psql("SELECT failed_count FROM pg_stat_archiver")
        print(
            f"sustained archiving (walg, stock config), bulk inserts for {elapsed:.0f} s: "
            f"{written:.0f} segments written ({written / elapsed:.1f}/s), {archived} archived "
            f"({archived / elapsed:.1f}/s); lag at the end: {waiting} segments waiting; "
            f"failures: {failed}"
        )
        cluster.stop()
    finally:
        stop_walg_helpers(cluster.data_dir)
        cluster.cleanup()


# --- summary and main -----------------------------------------------------------------------


def summary() -> None:
    print()
    print(
        "summary; ratio = walg's time / the peer's time for the same work (below 1: walg is faster)"
    )
    for row in RESULTS:
        line = f"  {row.work:<28} walg {row.show(row.walg)}"
        line += f" ({row.walg_note})" if row.walg_note else ""
        if row.daemon is not None:
            line += f"; walg + wal-g daemon {row.show(row.daemon)}"
        print(line)
        for label, value in row.peers:
            ratios = f"ratio {row.time_ratio(row.walg, value):4.2f}"
            if row.daemon is not None:
                ratios += f" (with the daemon {row.time_ratio(row.daemon, value):4.2f})"
            print(f"      vs {label:<38} {row.show(value):>14}   {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=55)
    parser.add_argument("--replay", type=int, default=38)
    parser.add_argument("--fetch-segments", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15, help="sustained archiving; 0: skip")
    parser.add_argument(
        "--rounds", type=int, default=1, help="backlog and replay: tools in turn, median"
    )
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--barman-venv", type=Path, default=Path("/opt/barman-venv"))
    parser.add_argument(
        "--at",
        metavar="REV",
        help="benchmark walg as of this git revision (its walg/ exported to a temporary "
        "directory and put first on PYTHONPATH) instead of the working tree",
    )
    args = parser.parse_args()
    work = PgCluster.make_base()
    try:
        tree = snapshot(work, args.at) if args.at else Path(WALG).parents[2]
        # archive_command's user cannot write __pycache__ here: compile, as an install does
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "walg")], check=True)
        daemon = has_daemon()
        began = time.monotonic()
        print(
            f"walg {describe(args.at)}; load average {os.getloadavg()[0]:.2f} "
            f"on {os.cpu_count()} CPUs"
        )
        run_all(work, args, daemon)
    finally:
        remove(work)
    summary()
    print(
        f"(whole run: {time.monotonic() - began:.0f} s; walg processes left running in the "
        f"background and stopped after their scenario: {wal_common.STOPPED_HELPERS})"
    )


def snapshot(work: Path, rev: str) -> Path:
    """``rev``'s walg/ package, exported under ``work``, first on walg's PYTHONPATH."""
    tree = owned_dir(work / "walg-source")
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev, "walg"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(tree)], check=True)
    wal_common.WALG_ENV["PYTHONPATH"] = str(tree)
    return tree


def describe(rev: str | None) -> str:
    repo = str(Path(__file__).resolve().parent.parent)
    words = ["git", "-C", repo, "log", "-1", "--format=%h %s", rev or "HEAD"]
    head = subprocess.run(words, capture_output=True, text=True).stdout.strip()[:70]
    if rev:
        return f"as of {head}"
    dirty = subprocess.run(
        ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no", "walg"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"working tree{' with uncommitted changes' if dirty else ''} at {head}"


def run_all(work: Path, args: argparse.Namespace, daemon: bool) -> None:
    # One cluster makes the backlog with archiving off; its segments also serve (a), (d)
    # and wal-fetch, pushed from fresh PGDATA-shaped directories.
    source = PgCluster.create(archive_command="", settings=SETTINGS)
    try:
        source.start()
        source.psql("CREATE TABLE filler (id bigint, a text, b text)")
        fill_until(source, max(args.backlog, args.pushes, args.fetch_segments) - 1)
        source.psql("SELECT pg_switch_wal()")
        pgbr, pgbr_fetch = (
            pgbackrest(
                work / f"{name}.conf",
                repo=work / f"{name}-repo",
                pgdata=source.data_dir,
                cluster=source,
            )
            for name in ("push", "fetch")
        )
        stanza_create(pgbr)
        stanza_create(pgbr_fetch)
        source.stop()
        names = ready(source.data_dir)
        segments = [source.data_dir / "pg_wal" / name for name in sorted(names)]
        bench_push(work, segments[-args.pushes :], pgbr, daemon)
        if not args.no_s3:
            moto, endpoint = _moto()
            try:
                bench_s3_push(work, segments[-args.pushes :], endpoint, args.barman_venv)
            finally:
                _stop_moto(moto)
        bench_backlog(work, source.data_dir, names, daemon, args.rounds)
        bench_fetch(work, segments[-args.fetch_segments :], pgbr_fetch, daemon)
    finally:
        source.cleanup()
    bench_replay(work, args.replay, daemon, args.rounds)
    if args.seconds:
        bench_sustained(work, args.seconds)


def _moto():  # type: ignore[no-untyped-def]
    from servers.s3 import raw_client, start_moto

    process, endpoint = start_moto(Path(tempfile.mkdtemp()) / "moto.log")
    raw_client(endpoint).create_bucket(Bucket=S3_BUCKET)
    return process, endpoint


def _stop_moto(process) -> None:  # type: ignore[no-untyped-def]
    from servers.s3 import stop_moto

    stop_moto(process)


if __name__ == "__main__":
    main()
