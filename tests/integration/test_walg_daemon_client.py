"""WAL-G's ``walg-daemon-client`` against ``wal-g daemon`` with PostgreSQL 15, configured as
WAL-G documents it: ``archive_command = 'walg-daemon-client SOCKET wal-push %f'`` and
``restore_command = 'walg-daemon-client SOCKET wal-fetch %f %p'``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from servers.postgres import ClusterFactory, PgCluster, pg_cluster_factory  # noqa: F401

from walg.postgres.wal import is_segment_name

BIN = Path(sys.executable).parent
WALG = str(BIN / "wal-g")
CLIENT = str(BIN / "walg-daemon-client")


def start_daemon(
    cluster: PgCluster, storage: Path, log: Path, pgdata: Path | None
) -> tuple[subprocess.Popen[bytes], str]:
    """``wal-g daemon`` as PostgreSQL's user on file storage ``storage``, with PGDATA
    ``pgdata`` (None: the daemon takes the client's working directory)."""
    socket_path = str(cluster.make_dir("daemon") / "walg.sock")
    command = ["env", "-u", "PGDATA", f"WALG_FILE_PREFIX={storage}", "WALG_LOG_LEVEL=DEBUG"]
    command += [f"PGDATA={pgdata}"] if pgdata else []
    command += [WALG, "daemon", socket_path]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    with log.open("wb") as out:
        daemon = subprocess.Popen(command, stderr=out)
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path):
        assert daemon.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return daemon, socket_path


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    daemon.wait(timeout=60)


def wait_archived(cluster: PgCluster, segment: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        failed = cluster.psql("SELECT failed_count FROM pg_stat_archiver")
        assert failed == "0", cluster.log_tail()
        assert time.monotonic() < deadline, f"{segment} not archived\n{cluster.log_tail()}"
        time.sleep(0.1)


def wait_promoted(cluster: PgCluster, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while cluster.psql("SELECT pg_is_in_recovery()") != "f":
        assert time.monotonic() < deadline, f"recovery did not end\n{cluster.log_tail()}"
        time.sleep(0.1)


def test_archive_and_restore_through_walg_daemon_client(
    pg_cluster_factory: ClusterFactory,  # noqa: F811 - the fixture imported above
) -> None:
    """Segments archived by walg-daemon-client wal-push %f (daemon with PGDATA) are stored
    and restorable: a base backup recovers through walg-daemon-client wal-fetch %f %p
    (daemon without PGDATA: PostgreSQL's working directory), ends recovery on a segment not
    in the archive, and has the data; that segment's fetch exits 74 as WAL-G's client."""
    base = PgCluster.make_base()
    source = pg_cluster_factory(base=base, archive_command="", start=False)
    storage = source.make_dir("storage")
    daemon, socket_path = start_daemon(source, storage, base / "push.log", source.data_dir)
    try:
        source.archive_command = f"{CLIENT} {socket_path} wal-push %f"
        source.configure()
        source.start()
        source.psql("CREATE TABLE t (id int, v text)")
        restored = PgCluster.make_base()
        command = [str(source.bin / "pg_basebackup"), "-D", str(restored / "data")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        subprocess.run([*command, "-X", "none", "-c", "fast"], env={**env, **source.env},
                       check=True, timeout=120)
        for i in range(4):
            rows = f"generate_series(1, {i + 1}000) g"
            source.psql(f"INSERT INTO t SELECT g, md5(g::text) FROM {rows}")
            segment = source.psql("SELECT pg_walfile_name(pg_switch_wal())")
        wait_archived(source, segment)
        expected = source.psql("SELECT count(*), sum(id) FROM t")
        source.stop()
    finally:
        stop_daemon(daemon)
    names = sorted(n.split(".")[0] for n in os.listdir(storage / "wal_005"))
    assert segment in names and all(is_segment_name(n) or "." in n for n in names)

    (restored / "data" / "recovery.signal").touch()
    cluster = pg_cluster_factory(
        adopt=restored / "data",
        base=restored,
        start=False,
        archive_command=None,
        settings={"recovery_target_timeline": "'latest'", "recovery_target_action": "'promote'"},
    )
    daemon, socket_path = start_daemon(cluster, storage, restored / "fetch.log", None)
    try:
        cluster.restore_command = f"{CLIENT} {socket_path} wal-fetch %f %p"
        cluster.configure()
        cluster.start()
        wait_promoted(cluster)
        assert cluster.psql("SELECT count(*), sum(id) FROM t") == expected
        missing = f"{segment[:16]}{int(segment[16:], 16) + 100:08X}"
        fetch = [CLIENT, socket_path, "wal-fetch", missing, "pg_wal/X"]
        if os.geteuid() == 0:  # as restore_command runs it: PostgreSQL's user, in PGDATA
            fetch = ["runuser", "-u", "postgres", "--", *fetch]
        absent = subprocess.run(fetch, cwd=cluster.data_dir, capture_output=True, text=True,
                                timeout=60)
        assert absent.returncode == 74, absent
        assert not (cluster.data_dir / "pg_wal" / "X").exists()
    finally:
        stop_daemon(daemon)
    log = (restored / "fetch.log").read_text()
    assert log.count("daemon: wal-fetch done") >= 4, log
