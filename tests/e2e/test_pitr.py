"""Point-in-time recovery and standbys with wal-g itself in archive_command and
restore_command, on file storage and on S3."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from conftest_helpers import WALG, archive_now, wait_promoted  # type: ignore[import-not-found]
from servers.postgres import PgCluster
from servers.s3 import make_s3_storage, moto_server  # noqa: F401

ACCOUNTS = "SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts"


def wrapper(cluster: PgCluster, env: Mapping[str, str]) -> str:
    """A script PostgreSQL can run (as its own user) that calls wal-g with ``env``."""
    folder = cluster.make_dir("bin")
    script = folder / "walg.sh"
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    script.write_text(f"#!/bin/sh\n{exports}exec {WALG} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def archiving(factory: Any, env_for: Any) -> tuple[PgCluster, dict[str, str]]:
    """A cluster whose archive_command is `wal-g wal-push %p`; returns it and walg's env."""
    cluster = factory()
    env = env_for(cluster)
    cluster.archive_command = f"{wrapper(cluster, env)} wal-push %p"
    cluster.configure()
    cluster.restart()
    return cluster, env


def file_env(cluster: PgCluster) -> dict[str, str]:
    return {"WALG_FILE_PREFIX": str(cluster.make_dir("storage"))}


def pitr_round_trip(factory: Any, walg: Any, env_for: Any) -> None:
    source, env = archiving(factory, env_for)
    source.pgbench_init(scale=1)
    walg("backup-push", str(source.data_dir), env={**source.env, **env})
    source.pgbench_run(seconds=2, clients=2).wait()
    source.psql("CREATE TABLE later (v int)")
    archive_now(source)
    target_time = source.psql("SELECT now()")
    expected = source.psql(ACCOUNTS)
    time.sleep(1.1)
    source.psql("INSERT INTO later VALUES (1)")
    source.pgbench_run(seconds=2, clients=2).wait()
    assert source.psql(ACCOUNTS) != expected
    archive_now(source)
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), "LATEST", f"--target-time={target_time}",
         "--target-action=promote", env={**source.env, **env})
    restored = factory(adopt=base / "data", base=base, archive_command=None)
    wait_promoted(restored)
    assert restored.psql(ACCOUNTS) == expected
    assert restored.psql("SELECT count(*) FROM later") == "0"


def test_pitr_on_file_storage(pg_cluster_factory: Any, walg: Any) -> None:
    """Recovery to a recorded time gives exactly the state at that time, later rows absent."""
    pitr_round_trip(pg_cluster_factory, walg, file_env)


def test_pitr_on_s3(pg_cluster_factory: Any, walg: Any, make_s3_storage: Any) -> None:  # noqa: F811
    """The same on S3 (moto), with lzma and path-style addressing."""
    bucket = make_s3_storage.new_bucket()

    def s3_env(cluster: PgCluster) -> dict[str, str]:
        return {"WALG_S3_PREFIX": f"s3://{bucket}/db", "AWS_ENDPOINT": make_s3_storage.endpoint,
                "AWS_S3_FORCE_PATH_STYLE": "true", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                "WALG_COMPRESSION_METHOD": "lzma"}

    pitr_round_trip(pg_cluster_factory, walg, s3_env)


def test_standby_follows_the_archive(pg_cluster_factory: Any, walg: Any) -> None:
    """A standby made with backup-fetch --standby replays new WAL through wal-fetch."""
    primary, env = archiving(pg_cluster_factory, file_env)
    primary.psql("CREATE TABLE t (v int)")
    walg("backup-push", str(primary.data_dir), env={**primary.env, **env})
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), "LATEST", "--standby", env={**primary.env, **env})
    assert (base / "data" / "standby.signal").exists()
    standby = pg_cluster_factory(adopt=base / "data", base=base, archive_command=None)
    primary.psql("INSERT INTO t SELECT generate_series(1, 1000)")
    archive_now(primary)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if standby.psql("SELECT count(*) FROM t") == "1000":
            break
        time.sleep(0.5)
    assert standby.psql("SELECT count(*) FROM t") == "1000"
    assert standby.psql("SELECT pg_is_in_recovery()") == "t"
