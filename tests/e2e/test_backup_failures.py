"""backup-push and backup-fetch fail loudly, lose nothing, and recover."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest_helpers import WALG, scrubbed_env  # type: ignore[import-not-found]
from servers.postgres import PgCluster


def storage_env(cluster: PgCluster, **extra: str) -> dict[str, str]:
    storage = cluster.make_dir("storage")
    return {**cluster.env, "WALG_FILE_PREFIX": str(storage), **extra}


def sentinels(env: dict[str, str]) -> list[Path]:
    return sorted(Path(env["WALG_FILE_PREFIX"]).glob("basebackups_005/*_sentinel.json"))


def test_killed_push_leaves_no_backup_and_rerun_succeeds(pg_cluster: PgCluster, walg: Any) -> None:
    """SIGKILL of backup-push mid-way: no sentinel, no worker left, then a rerun works."""
    pg_cluster.pgbench_init(scale=5)
    env = storage_env(pg_cluster, WALG_DISK_RATE_LIMIT="4MB", WALG_TAR_SIZE_THRESHOLD="8MB")
    proc = subprocess.Popen([WALG, "backup-push", str(pg_cluster.data_dir)],
                            env={**scrubbed_env(), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    parts = Path(env["WALG_FILE_PREFIX"], "basebackups_005")
    deadline = time.monotonic() + 60
    while not list(parts.glob("*/tar_partitions/part_*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(parts.glob("*/tar_partitions/part_*")), "backup-push made no progress"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    _wait_group_gone(proc.pid)
    assert sentinels(env) == []
    assert "No backups found" in walg("backup-list", env=env).stderr
    env.pop("WALG_DISK_RATE_LIMIT")
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    assert len(sentinels(env)) == 1


def _wait_group_gone(pgid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("backup-push workers outlived their parent")


def test_flipped_byte_fails_the_fetch_naming_the_object(pg_cluster: PgCluster, walg: Any,
                                                       tmp_path: Path) -> None:
    """A corrupted stored part makes backup-fetch fail with one line naming the object."""
    env = storage_env(pg_cluster)
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    store = Path(env["WALG_FILE_PREFIX"])
    part = sorted(store.glob("basebackups_005/*/tar_partitions/part_001*"))[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x40
    part.write_bytes(bytes(data))
    done = walg("backup-fetch", str(tmp_path / "restore"), "LATEST", env=env, check=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and "part_001.tar.lz4" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_backup_lists_what_exists(pg_cluster: PgCluster, walg: Any, tmp_path: Path) -> None:
    """Fetching a backup that does not exist names the ones that do, and exits 1."""
    env = storage_env(pg_cluster)
    name = walg("backup-push", str(pg_cluster.data_dir), env=env).stdout.strip()
    done = walg("backup-fetch", str(tmp_path / "r"), "base_000000010000000000000099", env=env,
                check=False)
    assert done.returncode == 1
    assert name in done.stderr and "HINT:" in done.stderr
    assert not (tmp_path / "r").exists()


def test_non_empty_target_is_refused(pg_cluster: PgCluster, walg: Any, tmp_path: Path) -> None:
    """backup-fetch refuses to write into a directory that holds anything."""
    env = storage_env(pg_cluster)
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    (tmp_path / "keep.txt").write_text("precious")
    done = walg("backup-fetch", str(tmp_path), "LATEST", env=env, check=False)
    assert done.returncode == 1 and "not empty" in done.stderr
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_clear_errors_for_bad_settings(pg_cluster: PgCluster, walg: Any) -> None:
    """No storage, a wrong data directory, an unreachable server: one line and a hint."""
    no_storage = walg("backup-push", str(pg_cluster.data_dir), env=pg_cluster.env, check=False)
    assert no_storage.returncode == 2 and "WALG_FILE_PREFIX" in no_storage.stderr
    env = storage_env(pg_cluster)
    wrong_dir = walg("backup-push", "/tmp", env=env, check=False)
    assert wrong_dir.returncode == 1 and "not the data directory" in wrong_dir.stderr
    unreachable = walg("backup-push", str(pg_cluster.data_dir), env={**env, "PGPORT": "1"},
                       check=False)
    assert unreachable.returncode == 1 and "HINT:" in unreachable.stderr
    for done in (no_storage, wrong_dir, unreachable):
        assert len(done.stderr.strip().splitlines()) == 2, done.stderr
        assert "Traceback" not in done.stderr


def test_user_data_reaches_sentinel_and_listing(pg_cluster: PgCluster, walg: Any) -> None:
    """WALG_SENTINEL_USER_DATA is stored in the sentinel and shown by backup-list --detail."""
    env = storage_env(pg_cluster, WALG_SENTINEL_USER_DATA='{"ticket": "OPS-42"}')
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    doc = json.loads(sentinels(env)[0].read_text())
    assert doc["UserData"] == {"ticket": "OPS-42"}
    listed = json.loads(walg("backup-list", "--detail", "--json", env=env).stdout)
    assert listed[0]["user_data"] == {"ticket": "OPS-42"}
