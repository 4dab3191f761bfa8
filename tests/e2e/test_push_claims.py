"""Two backup-push at one WAL position on a real cluster: never two successes for one name,
and the backup that was committed restores."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest_helpers import (  # type: ignore[import-not-found]
    WALG,
    archive_now,
    fetch_and_recover,
    scrubbed_env,
)
from servers.postgres import PgCluster
from test_pitr import archiving, file_env, wrapper  # type: ignore[import-not-found]

RESTORE = {"recovery_target": "'immediate'", "recovery_target_action": "'promote'"}
ROWS = "SELECT count(*), sum(g) FROM claimed"
_WAITING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE wait_event IN ('CheckpointStart', 'CheckpointDone')"
)


@contextmanager
def checkpointer_stopped(cluster: PgCluster) -> Iterator[None]:
    """The cluster's checkpointer is stopped (SIGSTOP) inside the block, so that backups
    starting meanwhile all wait for the one checkpoint that follows: one start LSN."""
    pid = int(cluster.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_for_waiters(cluster: PgCluster, count: int, runs: list[Any]) -> None:
    """Until ``count`` backends wait for a checkpoint (or a push has already ended)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if int(cluster.psql(_WAITING)) >= count or any(r.poll() is not None for r in runs):
            return
        time.sleep(0.1)
    raise AssertionError("the backup-push runs never reached pg_backup_start")


def test_two_pushes_at_one_position_never_both_succeed(pg_cluster_factory: Any, walg: Any) -> None:
    """Two backup-push started together on an idle cluster get one start LSN, hence one
    name: exactly one succeeds, the other fails saying the name is taken, and the
    committed backup restores to the data it was taken at."""
    source, env = archiving(pg_cluster_factory, file_env)
    source.psql("CREATE TABLE claimed AS SELECT g FROM generate_series(1, 5000) g")
    archive_now(source)
    expected = source.psql(ROWS)
    run_env = {**scrubbed_env(), **source.env, **env}
    command = [WALG, "backup-push", str(source.data_dir)]
    with checkpointer_stopped(source):
        runs = [
            subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for _ in range(2)
        ]
        wait_for_waiters(source, 2, runs)
    results = [(r.wait(timeout=600), *r.communicate()) for r in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    (_, out, _), = [r for r in results if r[0] == 0]
    (_, _, err), = [r for r in results if r[0] != 0]
    name = out.strip().splitlines()[-1]
    assert name in err and ("being written by another backup-push" in err
                            or "exists already" in err), err
    listed = walg("backup-list", env={**source.env, **env}).stdout
    assert listed.count(name) == 1, listed
    restored = fetch_and_recover(
        pg_cluster_factory, walg, {**source.env, **env}, name, wrapper(source, env), RESTORE
    )
    assert restored.psql(ROWS) == expected
