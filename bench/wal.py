"""WAL archiving figures: wal-push latency, sustained archiving, wal-fetch throughput.

In one run, on a throwaway PostgreSQL 15 cluster (2 cores here):

1. wall time of one `wal-g wal-push` of a 16 MiB segment (real segments of a pgbench run),
   median of --pushes, on file storage and on S3 (a local moto server), and pgBackRest's
   `archive-push` of the same segments to a posix repository, as reference;
2. sustained archiving: archive_command = wal-g wal-push while pgbench writes as fast as
   it can for --seconds; segments archived per second and the archiver's lag at the end;
3. wal-fetch: segments/s fetching --fetch-mib of WAL one segment at a time, as a recovery
   does, with and without prefetch, and pgBackRest's `archive-get` of the same segments.

    .venv/bin/python bench/wal.py [--pushes 12] [--seconds 20] [--fetch-mib 1024]

Runs as root; PostgreSQL, pgBackRest and archive_command run as the postgres user.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.postgres import PG_USER, PgCluster

WALG = str(Path(sys.executable).parent / "wal-g")
SEGMENT = 16 << 20


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command]


def walg_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "AWS_", "PG"))}
    return {**base, "WALG_LOG_LEVEL": "ERROR", **extra}


def wrapper(cluster: PgCluster, name: str, env: dict[str, str]) -> str:
    script = cluster.make_dir("bin") / name
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    script.write_text(f'#!/bin/sh\n{exports}exec {WALG} "$@"\n')
    script.chmod(0o755)
    return str(script)


def make_segments(cluster: PgCluster, count: int) -> list[Path]:
    """Generate WAL until ``count`` full segments exist; keep copies of them.

    Inserts of pgbench-like rows (an int and md5 text) make WAL quickly; its lz4 ratio
    (~2-3x) is close to that of pgbench's own WAL."""
    keep = cluster.make_dir("segments")
    wal = cluster.data_dir / "pg_wal"
    current = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    cluster.psql("CREATE TABLE IF NOT EXISTS filler (id bigint, a text, b text)")
    while True:
        done = sorted(p.name for p in wal.iterdir() if len(p.name) == 24 and p.name > current)
        if len(done) > count:
            break
        cluster.psql(
            "INSERT INTO filler SELECT g, md5(g::text), md5((g * 7)::text) "
            "FROM generate_series(1, 200000) g"
        )
    cluster.psql("SELECT pg_switch_wal()")
    names = done[:count]
    uid, gid = _postgres_ids()
    for name in names:
        shutil.copy(wal / name, keep / name)
        os.chown(keep / name, uid, gid)
    return [keep / n for n in names]


def fake_pgdata(cluster: PgCluster) -> Path:
    """A directory shaped like PGDATA (pg_wal/archive_status) for direct pushes."""
    pgdata = cluster.make_dir("fakedata")
    (pgdata / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    uid, gid = _postgres_ids()
    for path in (pgdata, pgdata / "pg_wal", pgdata / "pg_wal" / "archive_status"):
        os.chown(path, uid, gid)
    return pgdata


def time_pushes(
    command: list[str],
    pgdata: Path,
    segments: list[Path],
    cwd_env: dict[str, str],
    absolute: bool = False,
) -> float:
    """Median wall time (s) of pushing each segment once with ``command + [path]``, the
    path relative to PGDATA as PostgreSQL passes %p (absolute for pgBackRest, which
    resolves relative paths against its own pg1-path)."""
    times = []
    for segment in segments:
        path = pgdata / "pg_wal" / segment.name
        shutil.copy(segment, path)
        os.chown(path, *_postgres_ids())
        started = time.perf_counter()
        argument = str(path) if absolute else f"pg_wal/{segment.name}"
        subprocess.run(
            [*command, argument], cwd=pgdata, env=cwd_env, check=True, capture_output=True
        )
        times.append(time.perf_counter() - started)
        path.unlink()
    return statistics.median(times)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def pgbackrest_config(cluster: PgCluster) -> list[str]:
    repo = cluster.make_dir("pgbr-repo")
    conf = cluster.base / "pgbackrest.conf"
    conf.write_text(
        f"[global]\nrepo1-path={repo}\nlog-path={cluster.base / 'log'}\n"
        f"lock-path={cluster.base / 'run'}\ncompress-type=lz4\nlog-level-console=warn\n"
        f"archive-async=n\n[bench]\npg1-path={cluster.data_dir}\n"
        f"pg1-socket-path={cluster.socket_dir}\npg1-port={cluster.port}\n"
    )
    conf.chmod(0o644)
    base = as_postgres(["pgbackrest", f"--config={conf}", "--stanza=bench"])
    subprocess.run([*base, "stanza-create"], check=True, capture_output=True)
    return base


def runuser_cost(runs: int = 10) -> float:
    """Median wall time of `runuser -u postgres -- true`: part of every figure below."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(as_postgres(["true"]), check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def with_daemon(cluster: PgCluster, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `wal-g daemon` as the postgres user on a socket in the cluster's base dir."""
    socket_path = str(cluster.make_dir("daemon") / "walg.sock")
    daemon = subprocess.Popen(as_postgres(["env", *_env_words(env), WALG, "daemon", socket_path]))
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    env["WALG_DAEMON_SOCKET"] = socket_path
    return daemon


def bench_push(cluster: PgCluster, segments: list[Path], s3_endpoint: str | None) -> None:
    pgdata = fake_pgdata(cluster)
    storage = cluster.make_dir("walg-storage")
    env = walg_env({"WALG_FILE_PREFIX": str(storage)})
    overhead = runuser_cost()
    walg_file = time_pushes(
        as_postgres(["env", *_env_words(env), WALG, "wal-push"]),
        pgdata,
        segments,
        os.environ.copy(),
    )
    daemon = with_daemon(cluster, env)
    try:
        walg_daemon = time_pushes(
            as_postgres(["env", *_env_words(env), WALG, "wal-push"]),
            pgdata,
            segments,
            os.environ.copy(),
        )
    finally:
        daemon.terminate()
        daemon.wait(30)
    pgbr = pgbackrest_config(cluster)
    reference = time_pushes(
        [*pgbr, "archive-push"], pgdata, segments, os.environ.copy(), absolute=True
    )
    print(
        f"one 16 MiB wal-push, median of {len(segments)}; each figure includes "
        f"{overhead * 1000:.1f} ms of `runuser -u postgres` (all run as PostgreSQL's user):"
    )
    print(f"  walg, file storage        {walg_file * 1000:6.1f} ms")
    print(f"  walg via `wal-g daemon`   {walg_daemon * 1000:6.1f} ms")
    if s3_endpoint:
        s3 = walg_env(
            {
                "WALG_S3_PREFIX": "s3://walbench/db",
                "AWS_ENDPOINT": s3_endpoint,
                "AWS_S3_FORCE_PATH_STYLE": "true",
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
                "AWS_REGION": "us-east-1",
            }
        )
        walg_s3 = time_pushes(
            as_postgres(["env", *_env_words(s3), WALG, "wal-push"]),
            pgdata,
            segments,
            os.environ.copy(),
        )
        print(f"  walg, S3 (moto)           {walg_s3 * 1000:6.1f} ms")
    print(
        f"  pgBackRest archive-push   {reference * 1000:6.1f} ms   (walg/pgBackRest on file "
        f"storage: direct {walg_file / reference:4.2f}, daemon {walg_daemon / reference:4.2f})"
    )


def _env_words(env: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items() if k.startswith(("WALG_", "AWS_", "PATH", "PYTHON"))]


def bench_sustained(seconds: int) -> None:
    """archive_command = wal-g wal-push while bulk inserts write WAL as fast as they can."""
    cluster = PgCluster.create(settings={"max_wal_size": "4GB", "wal_keep_size": "0"})
    try:
        storage = cluster.make_dir("storage")
        script = wrapper(cluster, "walg.sh", walg_env({"WALG_FILE_PREFIX": str(storage)}))
        cluster.archive_command = f"{script} wal-push %p"
        cluster.configure()
        cluster.start()
        cluster.psql("CREATE TABLE filler (id bigint, a text, b text)")
        start_lsn = cluster.psql("SELECT pg_current_wal_lsn()")
        before = int(cluster.psql("SELECT archived_count FROM pg_stat_archiver"))
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            cluster.psql(
                "INSERT INTO filler SELECT g, md5(g::text), md5((g * 7)::text) "
                "FROM generate_series(1, 200000) g"
            )
        elapsed = time.monotonic() - started
        written = float(
            cluster.psql(
                f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}') / 16777216.0"
            )
        )
        archived = int(cluster.psql("SELECT archived_count FROM pg_stat_archiver")) - before
        ready = len(list((cluster.data_dir / "pg_wal" / "archive_status").glob("*.ready")))
        failed = cluster.psql("SELECT failed_count FROM pg_stat_archiver")
        print(
            f"sustained archiving, bulk inserts for {elapsed:.0f} s: {written:.0f} segments "
            f"written ({written / elapsed:.1f}/s), {archived} archived "
            f"({archived / elapsed:.1f}/s); lag at the end: {ready} segments waiting; "
            f"failures: {failed}"
        )
    finally:
        cluster.cleanup()


def bench_fetch(cluster: PgCluster, segments: list[Path]) -> None:
    storage = cluster.make_dir("fetch-storage")
    env = walg_env({"WALG_FILE_PREFIX": str(storage), "WALG_DOWNLOAD_CONCURRENCY": "4"})
    pgdata = fake_pgdata(cluster)
    for segment in segments:  # archive them once with wal-push
        path = pgdata / "pg_wal" / segment.name
        shutil.copy(segment, path)
        subprocess.run(
            [WALG, "wal-push", f"pg_wal/{segment.name}"],
            cwd=pgdata,
            env=env,
            check=True,
            capture_output=True,
        )
        path.unlink()
    mib = len(segments) * 16

    def run_fetches(label: str, extra: list[str], run_env: dict[str, str]) -> None:
        target = Path(tempfile.mkdtemp(prefix="walg-fetch-"))
        started = time.perf_counter()
        for segment in segments:
            subprocess.run(
                [WALG, "wal-fetch", *extra, segment.name, str(target / "RECOVERYXLOG")],
                env=run_env,
                check=True,
                capture_output=True,
            )
        elapsed = time.perf_counter() - started
        shutil.rmtree(target)
        print(
            f"wal-fetch {label:<17} {len(segments) / elapsed:6.1f} segments/s "
            f"({mib / elapsed:6.1f} MiB/s, {mib} MiB)"
        )

    run_fetches("with prefetch", [], env)
    run_fetches("without prefetch", ["--no-prefetch"], env)
    # The same through a warm `wal-g daemon` (WALG_DAEMON_SOCKET), prefetching in its threads.
    socket_path = str(Path(tempfile.mkdtemp(prefix="walgd-", dir="/tmp")) / "walg.sock")
    daemon = subprocess.Popen([WALG, "daemon", socket_path], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(socket_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        run_fetches("via the daemon", [], {**env, "WALG_DAEMON_SOCKET": socket_path})
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)
    pgbr = pgbackrest_config(cluster)
    for segment in segments:
        path = pgdata / "pg_wal" / segment.name
        shutil.copy(segment, path)
        os.chown(path, *_postgres_ids())
        subprocess.run([*pgbr, "archive-push", f"{path}"], check=True, capture_output=True)
        path.unlink()
    target = cluster.make_dir("pgbr-fetch")
    started = time.perf_counter()
    for segment in segments:
        subprocess.run(
            [*pgbr, "archive-get", segment.name, str(target / "RECOVERYXLOG")],
            check=True,
            capture_output=True,
        )
    elapsed = time.perf_counter() - started
    print(
        f"pgBackRest archive-get     {len(segments) / elapsed:6.1f} segments/s "
        f"({mib / elapsed:6.1f} MiB/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=12)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--fetch-mib", type=int, default=1024)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    # archive_command's user cannot write __pycache__ here: compile once, as an install does
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(WALG).parents[2] / "walg")], check=True
    )
    cluster = PgCluster.create(settings={"wal_keep_size": "4GB", "max_wal_size": "4GB"})
    try:
        cluster.start()
        cluster.pgbench_init(scale=10)
        segments = make_segments(cluster, max(args.pushes, args.fetch_mib // 16))
        s3 = None if args.no_s3 else _moto()
        try:
            bench_push(cluster, segments[: args.pushes], s3[1] if s3 else None)
        finally:
            if s3:
                _stop_moto(s3[0])
        bench_fetch(cluster, segments[: max(1, args.fetch_mib // 16)])
    finally:
        cluster.cleanup()
    bench_sustained(args.seconds)


def _moto():  # type: ignore[no-untyped-def]
    from servers.s3 import raw_client, start_moto

    process, endpoint = start_moto(Path(tempfile.mkdtemp()) / "moto.log")
    raw_client(endpoint).create_bucket(Bucket="walbench")
    return process, endpoint


def _stop_moto(process) -> None:  # type: ignore[no-untyped-def]
    from servers.s3 import stop_moto

    stop_moto(process)


if __name__ == "__main__":
    main()
