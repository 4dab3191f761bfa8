"""backup-push commits a backup only once the WAL it needs is archived in its storage
(issue 13 item 4): pg_backup_stop waits for archiving, bounded by WALG_STOP_BACKUP_TIMEOUT,
and the stop segment must be in this storage's wal_005/ unless WALG_ARCHIVE_CHECK=false."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest_helpers import WALG, archive_now, scrubbed_env  # type: ignore[import-not-found]
from servers.postgres import PgCluster

SEGMENT_RE = re.compile(r"WAL segment ([0-9A-F]{24}), the last one this backup needs")


def script(cluster: PgCluster, name: str, body: str) -> str:
    """An executable shell script PostgreSQL can run as archive_command."""
    path = cluster.make_dir("bin") / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def walg_archiver(cluster: PgCluster, storage: Path, delay: int = 0) -> str:
    """archive_command: ``wal-g wal-push %p`` to ``storage``, after ``delay`` seconds."""
    pause = f"sleep {delay}\n" if delay else ""
    body = f"{pause}export WALG_FILE_PREFIX='{storage}'\nexec {WALG} wal-push \"$1\""
    return script(cluster, "archive.sh", body) + " %p"


def sentinels(storage: Path) -> list[Path]:
    return sorted(storage.glob("basebackups_005/*_sentinel.json"))


def stop_segment(sentinel: Path) -> str:
    """The segment holding the byte before the backup's FinishLSN, on its timeline."""
    doc = json.loads(sentinel.read_text())
    timeline = int(sentinel.name[len("base_"):][:8], 16)
    segno = (doc["FinishLSN"] - 1) // (16 << 20)
    return f"{timeline:08X}{segno >> 8:08X}{segno & 0xFF:08X}"


def push_env(cluster: PgCluster, storage: Path, **env: str) -> dict[str, str]:
    """backup-push's environment, with the archive check on (the walg fixture turns it off)."""
    return {**cluster.env, "WALG_FILE_PREFIX": str(storage), "WALG_ARCHIVE_CHECK": "true", **env}


def push(walg: Any, cluster: PgCluster, storage: Path, **env: str) -> Any:
    return walg("backup-push", str(cluster.data_dir), check=False, timeout=300,
                env=push_env(cluster, storage, **env))


def test_failing_archive_command_fails_the_push_without_a_sentinel(
    pg_cluster_factory: Any, walg: Any
) -> None:
    """archive_command exits 1: backup-push stops at WALG_STOP_BACKUP_TIMEOUT, exits non-zero,
    writes no sentinel, and names the unarchived stop segment and the archiver's failure;
    once archiving works, the next backup-push succeeds (the session was left sane)."""
    cluster = pg_cluster_factory(archive_command="/bin/false")
    storage = cluster.make_dir("storage")
    failed = push(walg, cluster, storage, WALG_STOP_BACKUP_TIMEOUT="5s")
    assert failed.returncode != 0
    assert sentinels(storage) == []
    found = SEGMENT_RE.search(failed.stderr)
    assert found, failed.stderr
    assert (cluster.data_dir / "pg_wal" / "archive_status" / f"{found[1]}.ready").exists()
    assert "not archived within 5s" in failed.stderr
    assert "archive_command is failing: the archiver last failed on" in failed.stderr
    assert "WALG_STOP_BACKUP_TIMEOUT" in failed.stderr and "Traceback" not in failed.stderr
    cluster.archive_command = walg_archiver(cluster, storage)
    cluster.configure()
    cluster.restart()
    done = push(walg, cluster, storage, WALG_STOP_BACKUP_TIMEOUT="5m")
    assert done.returncode == 0, done.stderr
    assert len(sentinels(storage)) == 1


def test_slow_archive_command_is_waited_for(pg_cluster_factory: Any, walg: Any) -> None:
    """archive_command works but slowly: backup-push waits, and when it returns the stop
    segment is already in the storage."""
    cluster = pg_cluster_factory()
    storage = cluster.make_dir("storage")
    cluster.archive_command = walg_archiver(cluster, storage, delay=3)
    cluster.configure()
    cluster.restart()
    done = push(walg, cluster, storage)
    assert done.returncode == 0, done.stderr
    (sentinel,) = sentinels(storage)
    assert list(storage.glob(f"wal_005/{stop_segment(sentinel)}.*")), done.stderr


@pytest.mark.parametrize("archiving", ["elsewhere", "off"])
def test_wal_not_in_this_storage_is_refused_unless_opted_out(
    pg_cluster_factory: Any, walg: Any, archiving: str
) -> None:
    """WAL archived to another place (or archive_mode=off): backup-push exits non-zero with
    no sentinel; with WALG_ARCHIVE_CHECK=false it succeeds and warns what exit 0 means."""
    if archiving == "off":
        cluster = pg_cluster_factory(archive_command=None)
    else:
        cluster = pg_cluster_factory()
        cluster.archive_command = f"cp %p {cluster.make_dir('archive')}/%f"
        cluster.configure()
        cluster.restart()
        archive_now(cluster)
    storage = cluster.make_dir("storage")
    refused = push(walg, cluster, storage)
    assert refused.returncode != 0
    assert sentinels(storage) == []
    assert SEGMENT_RE.search(refused.stderr), refused.stderr
    assert "WALG_ARCHIVE_CHECK=false" in refused.stderr
    expected = "archive_mode is off" if archiving == "off" else "is not in file://"
    assert expected in refused.stderr
    allowed = push(walg, cluster, storage, WALG_ARCHIVE_CHECK="false")
    assert allowed.returncode == 0, allowed.stderr
    assert len(sentinels(storage)) == 1
    warning = "is not archived" if archiving == "off" else "WAL not checked in this storage"
    assert warning in allowed.stderr


def test_wal_stored_by_wal_g_with_zstd_passes_the_check_with_a_warning(
    pg_cluster_factory: Any, walg: Any
) -> None:
    """WAL archived to this storage by WAL-G's wal-push with zstd (a .zst object, which walg
    cannot read) is archived: backup-push commits, warning that only WAL-G restores it."""
    cluster = pg_cluster_factory()
    storage = cluster.make_dir("storage")
    wal = cluster.make_dir("storage/wal_005")
    cluster.archive_command = script(cluster, "zst.sh", f'cp "$1" "{wal}/$(basename "$1").zst"') \
        + " %p"
    cluster.configure()
    cluster.restart()
    done = push(walg, cluster, storage)
    assert done.returncode == 0, done.stderr
    (sentinel,) = sentinels(storage)
    assert (wal / f"{stop_segment(sentinel)}.zst").exists()
    assert "walg cannot read it" in done.stderr and "WAL-G's wal-fetch" in done.stderr


def streaming_standby(factory: Any, primary: PgCluster) -> PgCluster:
    """A hot standby of ``primary`` (pg_basebackup -R), not archiving itself."""
    base = PgCluster.make_base()
    subprocess.run(
        [str(primary.bin / "pg_basebackup"), "-D", str(base / "data"), "-R", "-X", "stream",
         "-c", "fast", "-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres",
         "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )
    standby: PgCluster = factory(adopt=base / "data", base=base, archive_command=None)
    return standby


def replayed(standby: PgCluster, primary: PgCluster) -> bool:
    lsn = primary.psql("SELECT pg_current_wal_lsn()")
    return standby.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t"


def test_standby_backup_waits_for_the_primary_to_archive_its_stop_segment(
    pg_cluster_factory: Any,
) -> None:
    """On a standby (which cannot finish a segment) backup-push waits until the primary
    archives the stop segment to this storage, and only then commits."""
    primary = pg_cluster_factory()
    storage = primary.make_dir("storage")
    primary.archive_command = walg_archiver(primary, storage)
    primary.configure()
    primary.restart()
    standby = streaming_standby(pg_cluster_factory, primary)
    archive_now(primary)
    primary.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    deadline = time.monotonic() + 120
    while not replayed(standby, primary):
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.1)
    env = {**scrubbed_env(), **push_env(standby, storage, WALG_STOP_BACKUP_TIMEOUT="10m")}
    proc = subprocess.Popen([WALG, "backup-push", str(standby.data_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    waited = False
    for line in proc.stderr:  # ends when backup-push exits
        if "waiting for the backup's stop segment" in line and not waited:
            waited = True
            archive_now(primary)  # finish the segment on the primary: it gets archived
    assert proc.wait(timeout=300) == 0
    assert waited, "backup-push did not wait for the stop segment"
    (sentinel,) = sentinels(storage)
    assert list(storage.glob(f"wal_005/{stop_segment(sentinel)}.*"))
