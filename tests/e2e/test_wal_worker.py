"""The background worker with a real PostgreSQL 15: it outlives a server restart without
losing or repeating a segment, its files never enter a base backup, and a restore whose
restore_command is plain `wal-g wal-fetch %f %p` replays through it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest_helpers import archive_now, wait_promoted  # type: ignore[import-not-found]
from servers.postgres import PgCluster
from test_pitr import ACCOUNTS, wrapper  # type: ignore[import-not-found]

from walg.wal.background import worker_pid


def ready_left(cluster: PgCluster) -> list[str]:
    status = cluster.data_dir / "pg_wal" / "archive_status"
    return [n for n in os.listdir(status) if n.endswith(".ready")]


def wait_archived(cluster: PgCluster, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while ready_left(cluster):
        assert cluster.psql("SELECT failed_count FROM pg_stat_archiver") == "0", (
            cluster.log_tail()
        )
        assert time.monotonic() < deadline, cluster.log_tail()
        time.sleep(0.1)


def stored_names(store: Path) -> set[str]:
    return {p.name.split(".")[0] for p in (store / "wal_005").iterdir()}


def test_worker_survives_restarts_and_stays_out_of_backups(pg_cluster_factory, walg) -> None:  # type: ignore[no-untyped-def]
    cluster = pg_cluster_factory()
    store = cluster.make_dir("storage")
    env = {"WALG_FILE_PREFIX": str(store), "WALG_ARCHIVE_CHECK": "true"}
    cluster.archive_command = f"{wrapper(cluster, env)} wal-push %p"
    cluster.configure()
    cluster.restart()
    pg_wal = cluster.data_dir / "pg_wal"
    cluster.pgbench_init(scale=2)
    archive_now(cluster)
    wait_archived(cluster)
    pid = worker_pid(str(pg_wal))
    assert pid is not None, "no worker started by archive_command"
    cluster.restart()  # PostgreSQL's stop does not signal the worker: its own session
    assert worker_pid(str(pg_wal)) == pid
    for _ in range(3):
        cluster.pgbench_run(seconds=1, clients=2).wait()
        archive_now(cluster)
    wait_archived(cluster)
    assert worker_pid(str(pg_wal)) == pid  # the same worker served the restarted server
    assert cluster.psql("SELECT failed_count FROM pg_stat_archiver") == "0"
    done = {n[: -len(".done")] for n in os.listdir(pg_wal / "archive_status")}
    assert done <= stored_names(store)
    # a base backup taken while the worker runs holds none of its files
    assert (pg_wal / "walg_data" / "walg.sock").exists()
    name = walg("backup-push", str(cluster.data_dir), env={**cluster.env, **env})
    name = name.stdout.strip().splitlines()[-1]
    expected = cluster.psql(ACCOUNTS)
    archive_now(cluster)
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), name, env=env)
    assert os.listdir(base / "data" / "pg_wal") in ([], ["archive_status"]), os.listdir(
        base / "data" / "pg_wal"
    )
    # restore with plain `wal-g wal-fetch %f %p`: the first call starts the restored
    # cluster's own worker, which serves the rest
    (base / "data" / "recovery.signal").touch()
    restored = pg_cluster_factory(
        adopt=base / "data",
        base=base,
        archive_command=None,
        restore_command=f"{wrapper(cluster, env)} wal-fetch %f %p",
    )
    wait_promoted(restored)
    assert restored.psql(ACCOUNTS) == expected
    restored_worker = worker_pid(str(restored.data_dir / "pg_wal"))
    assert restored_worker is not None and restored_worker != pid
