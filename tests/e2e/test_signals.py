"""SIGTERM ends a command at a safe point: exit 143, one ERROR line, nothing half-written."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conftest_helpers import WALG, push, scrubbed_env  # type: ignore[import-not-found]
from servers.faults import FaultProxy
from servers.logtext import untimed
from servers.postgres import PgCluster
from servers.s3 import make_s3_storage, moto_server  # noqa: F401


def start(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [WALG, *args], env={**scrubbed_env(), **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def wait_for(condition: Callable[[], object], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.05)


def terminate(proc: subprocess.Popen[str]) -> str:
    """SIGTERM to ``proc``; its stderr once it has ended."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return err


def assert_one_error(err: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in untimed(err).splitlines() if line.startswith("ERROR:")]
    assert errors == ["ERROR: stopped by SIGTERM"], err


def temporaries(storage: Path) -> list[Path]:
    return list(storage.rglob(".walg-tmp-*"))


def test_sigterm_stops_wal_push_and_removes_its_temporary_object(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    """wal-push of a real segment, slowed by a disk rate limit, gets SIGTERM mid-upload: it
    exits 143 with one ERROR line, and neither the object nor its temporary file is left."""
    segment = pg_cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    wal_dir = tmp_path / "pg_wal"
    wal_dir.mkdir()
    shutil.copyfile(pg_cluster.data_dir / "pg_wal" / segment, wal_dir / segment)
    storage = tmp_path / "storage"
    env = {"WALG_FILE_PREFIX": str(storage), "WALG_DISK_RATE_LIMIT": "1MB"}
    proc = start(["wal-push", str(wal_dir / segment)], env)
    wait_for(lambda: temporaries(storage), "temporary object")
    err = terminate(proc)
    assert proc.returncode == 143, err
    assert_one_error(err)
    assert temporaries(storage) == []
    assert [p for p in storage.rglob("*") if p.is_file()] == []


def test_sigterm_stops_backup_push(pg_cluster: PgCluster) -> None:
    """backup-push (worker processes) gets SIGTERM mid-way: exit 143, one ERROR line, no
    sentinel, no temporary file, no worker left."""
    pg_cluster.pgbench_init(scale=5)
    storage = pg_cluster.make_dir("storage")
    env = {**pg_cluster.env, "WALG_FILE_PREFIX": str(storage), "WALG_DISK_RATE_LIMIT": "4MB",
           "WALG_TAR_SIZE_THRESHOLD": "8MB"}
    proc = start(["backup-push", str(pg_cluster.data_dir)], env)
    wait_for(lambda: list(storage.glob("basebackups_005/*/tar_partitions/part_*")), "part")
    err = terminate(proc)
    assert proc.returncode == 143, err
    assert_one_error(err)
    assert list(storage.glob("basebackups_005/*_sentinel.json")) == []
    assert temporaries(storage) == []
    wait_for(lambda: not _group_alive(proc.pid), "end of the workers", 30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_backup_fetch_with_a_hint_to_empty_the_target(
    pg_cluster: PgCluster, walg: Any, make_s3_storage: Any, tmp_path: Path  # noqa: F811
) -> None:
    """backup-fetch gets SIGTERM while a download hangs: exit 143, one ERROR line, and a hint
    to empty the target, which a new backup-fetch refuses while it holds part of a restore."""
    pg_cluster.pgbench_init(scale=1)
    bucket = make_s3_storage.new_bucket()
    env = {"WALG_S3_PREFIX": f"s3://{bucket}/db", "AWS_ENDPOINT": make_s3_storage.endpoint,
           "AWS_S3_FORCE_PATH_STYLE": "true", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    push(walg, pg_cluster, env)
    target = tmp_path / "restore"
    upstream = urlsplit(make_s3_storage.endpoint)
    with FaultProxy(str(upstream.hostname), int(upstream.port or 80)) as proxy:
        proxy.stall_next(1000, match=r"GET \S*backup_label\.tar")  # after the data parts
        proc = start(["backup-fetch", str(target), "LATEST"], {**env, "AWS_ENDPOINT": proxy.url})
        wait_for(lambda: proxy.faults, "request for backup_label")
        err = terminate(proc)
    assert proc.returncode == 143, err
    assert_one_error(err)
    assert f"HINT: {target} holds a partial restore: empty it" in untimed(err)
    again = walg("backup-fetch", str(target), "LATEST", env=env, check=False)
    assert again.returncode != 0 and "is not empty" in again.stderr
