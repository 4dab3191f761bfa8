"""backup-push then backup-fetch of a real cluster: the restored cluster has the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest_helpers import archive_now  # type: ignore[import-not-found]
from servers.postgres import PgCluster

WalgRunner = Any

TABLE_SUMS = """
SELECT string_agg(t || ':' || s, ',' ORDER BY t) FROM (
  SELECT 'accounts' AS t, sum(abalance)::text || '/' || count(*) AS s FROM pgbench_accounts
  UNION ALL SELECT 'marker', md5(string_agg(v, ',' ORDER BY id)) FROM marker
) x
"""


def prepare(cluster: PgCluster) -> None:
    cluster.pgbench_init(scale=2)
    cluster.psql("CREATE TABLE marker (id int PRIMARY KEY, v text)")
    cluster.psql("INSERT INTO marker SELECT g, md5(g::text) FROM generate_series(1, 5000) g")


def restore(cluster_factory, walg: WalgRunner, env: dict[str, str], archive: Path,
            name: str = "LATEST", extra: tuple[str, ...] = ()) -> PgCluster:
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), name, *extra, env=env)
    (base / "data" / "recovery.signal").touch()
    return cluster_factory(
        adopt=base / "data", base=base, archive_command=None,
        restore_command=f"cp {archive}/%f %p",
        settings={"recovery_target": "'immediate'", "recovery_target_action": "'promote'"},
    )


@pytest.mark.parametrize("method", ["lz4", "brotli", "lzma", "none"])
def test_push_fetch_restores_the_data(pg_cluster_factory, walg: WalgRunner, method: str) -> None:
    """A backup restored into a new directory starts and holds exactly the backed-up data."""
    source = pg_cluster_factory()
    archive = source.make_dir("archive")
    source.archive_command = f"cp %p {archive}/%f"
    source.configure()
    source.restart()
    prepare(source)
    expected = source.psql(TABLE_SUMS)
    storage = source.make_dir("storage")
    env = {**source.env, "WALG_FILE_PREFIX": str(storage), "WALG_COMPRESSION_METHOD": method}
    pushed = walg("backup-push", str(source.data_dir), env=env)
    name = pushed.stdout.strip().splitlines()[-1]
    assert name.startswith("base_")
    assert (storage / "basebackups_005" / f"{name}_backup_stop_sentinel.json").exists()
    folder = storage / "basebackups_005" / name / "tar_partitions"
    parts = sorted(p.name for p in folder.iterdir())
    ext = _ext(method)  # none: part_001.tar, as WAL-G names them
    assert parts == [f"backup_label.tar{ext}", f"part_001.tar{ext}", f"pg_control.tar{ext}"]
    archive_now(source)
    restored = restore(pg_cluster_factory, walg, env, archive)
    assert restored.psql(TABLE_SUMS) == expected


def test_backup_during_writes(pg_cluster_factory, walg: WalgRunner) -> None:
    """A backup taken while pgbench writes restores to a consistent, startable cluster."""
    source = pg_cluster_factory()
    archive = source.make_dir("archive")
    source.archive_command = f"cp %p {archive}/%f"
    source.configure()
    source.restart()
    prepare(source)
    marker = source.psql("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM marker")
    bench = source.pgbench_run(seconds=60, clients=2)
    storage = source.make_dir("storage")
    env = {**source.env, "WALG_FILE_PREFIX": str(storage), "WALG_UPLOAD_CONCURRENCY": "2",
           "WALG_TAR_SIZE_THRESHOLD": "1048576"}
    walg("backup-push", str(source.data_dir), env=env)
    bench.stop()
    archive_now(source)
    restored = restore(pg_cluster_factory, walg, env, archive)
    assert restored.psql("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM marker") == marker
    assert restored.psql("SELECT count(*) FROM pgbench_accounts") == "200000"
    assert restored.psql("SELECT count(*) FROM pgbench_branches") == "2"


def _ext(method: str) -> str:
    return {"lz4": ".lz4", "brotli": ".br", "lzma": ".lzma", "none": ""}[method]
