"""Errors of the host's file system (EACCES, ENOSPC) are the user's environment: one line
naming the path and what went wrong, a hint, exit 1; never "internal error", never a
traceback, never a backup or restore that looks complete."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_helpers import WALG, scrubbed_env  # type: ignore[import-not-found]
from servers.postgres import PG_USER, PgCluster


def storage_env(cluster: PgCluster) -> dict[str, str]:
    return {**cluster.env, "WALG_FILE_PREFIX": str(cluster.make_dir("storage"))}


def as_postgres(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``wal-g ARGS`` run as the postgres OS user (root would pass every permission check)."""
    settings = [f"{k}={v}" for k, v in {**scrubbed_env(), **env}.items()]
    return subprocess.run(
        ["runuser", "-u", PG_USER, "--", "env", "-i", *settings, WALG, *args],
        capture_output=True, text=True, timeout=300,
    )


def assert_one_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1 with exactly one ERROR line holding every needle, a HINT, no traceback."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert "HINT:" in done.stderr
    return errors[0]


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the duration (root only)."""
    where.mkdir(mode=0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_unreadable_file_in_pgdata_names_it(pg_cluster: PgCluster, walg: Any) -> None:
    """backup-push meeting a file it may not read exits 1 naming that file; no sentinel."""
    env = storage_env(pg_cluster)
    secret = pg_cluster.data_dir / "root_only.conf"
    secret.write_text("not for postgres\n")
    secret.chmod(0o600)  # owned by root: the postgres user cannot open it
    try:
        done = as_postgres("backup-push", str(pg_cluster.data_dir), env=env)
    finally:
        secret.unlink()
    assert_one_error(done, str(secret), "Permission denied")
    assert not list(Path(env["WALG_FILE_PREFIX"]).glob("basebackups_005/*_sentinel.json"))


def test_fetch_under_unwritable_directory_names_it(pg_cluster: PgCluster, walg: Any) -> None:
    """backup-fetch into a directory it may not create exits 1 naming it."""
    env = storage_env(pg_cluster)
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    locked = pg_cluster.base / "root_owned"
    locked.mkdir(mode=0o755)  # owned by root: postgres may enter, not create
    target = locked / "restore"
    done = as_postgres("backup-fetch", str(target), "LATEST", env=env)
    assert_one_error(done, str(target), "Permission denied")
    assert not target.exists()


def test_full_disk_during_fetch_names_the_file(pg_cluster: PgCluster, walg: Any) -> None:
    """ENOSPC while restoring exits 1 naming the file; the target never gets pg_control."""
    pg_cluster.pgbench_init(scale=2)
    env = storage_env(pg_cluster)
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    with tiny_tmpfs(pg_cluster.base / "small", "8m") as mount:
        target = mount / "restore"
        done = walg("backup-fetch", str(target), "LATEST", env=env, check=False)
        line = assert_one_error(done, "No space left on device", str(target))
        assert not (target / "global" / "pg_control").exists(), line


def test_full_disk_during_wal_push_is_not_a_bug(pg_cluster: PgCluster, walg: Any) -> None:
    """wal-push to file storage on a full disk exits non-zero naming the cause, leaves no
    temporary file behind, and succeeds once there is room."""
    segment = pg_cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg_cluster.psql("CREATE TABLE noise AS SELECT md5(random()::text) AS t "
                    "FROM generate_series(1, 50000)")  # a few MiB that compress poorly
    pg_cluster.psql("SELECT pg_switch_wal()")
    path = pg_cluster.data_dir / "pg_wal" / segment
    with tiny_tmpfs(pg_cluster.base / "small", "256k") as mount:
        env = {**pg_cluster.env, "WALG_FILE_PREFIX": str(mount / "archive")}
        done = walg("wal-push", str(path), env=env, check=False)
        assert done.returncode == 1, done.stderr
        assert "No space left on device" in done.stderr
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr
        leftovers = [p for p in mount.rglob("*") if p.is_file()]
        assert leftovers == [], leftovers
