"""Delta backups on a real cluster: a full backup and deltas on it, each restored (its chain
put together, increments applied) and compared with a dump taken at its point."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest_helpers import (  # type: ignore[import-not-found]
    archive_now,
    fetch_and_recover,
    push,
    wait_promoted,
)
from servers.postgres import PgCluster
from servers.s3 import make_s3_storage, moto_server  # noqa: F401
from test_backup_features import pgp_key  # type: ignore[import-not-found]  # noqa: F401
from test_pitr import archiving, file_env, wrapper  # type: ignore[import-not-found]

from walg.backup.delta import MTIME_MARGIN

RESTORE = {"recovery_target": "'immediate'", "recovery_target_action": "'promote'"}


def sentinel(env: dict[str, str], name: str) -> dict[str, Any]:
    path = Path(env["WALG_FILE_PREFIX"]) / "basebackups_005" / f"{name}_backup_stop_sentinel.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def files(env: dict[str, str], name: str) -> dict[str, Any]:
    path = Path(env["WALG_FILE_PREFIX"]) / "basebackups_005" / name / "files_metadata.json"
    doc: dict[str, Any] = json.loads(path.read_text())["Files"]
    return doc


def test_full_and_three_deltas_each_restore(pg_cluster_factory: Any, walg: Any) -> None:
    """Updates, a new table, a dropped table, VACUUM FULL and truncations between backups:
    the full and every delta restore to exactly the data they were taken at."""
    source, env = archiving(pg_cluster_factory, file_env)
    env = {**env, "WALG_DELTA_MAX_STEPS": "3", "WALG_UPLOAD_CONCURRENCY": "2"}
    source.pgbench_init(scale=2)
    source.psql(
        "CREATE TABLE doomed AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g"
    )
    source.psql(
        "CREATE TABLE shrinking AS SELECT g AS id, repeat('x', 200) AS v "
        "FROM generate_series(1, 50000) g"
    )
    # Files are skipped only when unchanged since well before the base started (file times
    # are coarse): let the files of this brand-new cluster age past that margin.
    time.sleep(MTIME_MARGIN.total_seconds() + 0.5)
    names, dumps = [push(walg, source, env)], [source.dumpall()]

    source.pgbench_run(seconds=3, clients=2).wait()
    source.psql("CREATE TABLE fresh AS SELECT g AS id FROM generate_series(1, 10000) g")
    names.append(push(walg, source, env))
    dumps.append(source.dumpall())

    source.psql("DROP TABLE doomed")
    source.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 97 = 0")
    source.psql("VACUUM FULL pgbench_accounts")
    names.append(push(walg, source, env))
    dumps.append(source.dumpall())

    source.psql("DELETE FROM shrinking WHERE id > 5000")
    source.psql("VACUUM shrinking")  # gives the emptied tail pages back: the file shrinks
    source.psql("TRUNCATE pgbench_history")
    source.psql("INSERT INTO fresh SELECT g FROM generate_series(10001, 12000) g")
    names.append(push(walg, source, env))
    dumps.append(source.dumpall())
    archive_now(source)

    full, d1, d2, d3 = names
    assert "_D_" not in full
    for number, (delta, base) in enumerate([(d1, full), (d2, d1), (d3, d2)], start=1):
        assert delta.endswith("_D_" + base[len("base_") :].split("_D_")[0])
        doc = sentinel(env, delta)
        assert (doc["DeltaFrom"], doc["DeltaFullName"], doc["DeltaCount"]) == (base, full, number)
        assert doc["DeltaLSN"] == sentinel(env, base)["LSN"]
    described = files(env, d1)
    assert any(f["IsIncremented"] for f in described.values())
    assert any(f["IsSkipped"] for f in described.values())
    assert not any(f["IsIncremented"] or f["IsSkipped"] for f in files(env, full).values())
    # The chain is as long as WALG_DELTA_MAX_STEPS allows: the next backup is full.
    assert "_D_" not in push(walg, source, env)

    for name, dump in zip(names, dumps, strict=True):
        restored = fetch_and_recover(
            pg_cluster_factory, walg, {**source.env, **env}, name, wrapper(source, env), RESTORE
        )
        assert restored.dumpall() == dump, f"{name} restored different data"
        restored.stop()


def test_latest_full_origin_bases_every_delta_on_the_full(
    pg_cluster_factory: Any, walg: Any
) -> None:
    """WALG_DELTA_ORIGIN=LATEST_FULL: each delta depends on the full backup alone."""
    source, env = archiving(pg_cluster_factory, file_env)
    env = {**env, "WALG_DELTA_MAX_STEPS": "2", "WALG_DELTA_ORIGIN": "LATEST_FULL"}
    source.pgbench_init(scale=1)
    full = push(walg, source, env)
    source.pgbench_run(seconds=2, clients=2).wait()
    first = push(walg, source, env)
    source.pgbench_run(seconds=2, clients=2).wait()
    second = push(walg, source, env)
    dump = source.dumpall()
    for delta in (first, second):
        doc = sentinel(env, delta)
        assert (doc["DeltaFrom"], doc["DeltaFullName"], doc["DeltaCount"]) == (full, full, 1)
    assert "_D_" not in push(walg, source, env)  # two deltas made on that full: a new full
    # The first delta is not needed to restore the second: move it out of the way.
    storage = Path(env["WALG_FILE_PREFIX"]) / "basebackups_005"
    (storage / f"{first}_backup_stop_sentinel.json").unlink()
    archive_now(source)
    restored = fetch_and_recover(
        pg_cluster_factory, walg, {**source.env, **env}, second, wrapper(source, env), RESTORE
    )
    assert restored.dumpall() == dump


def test_delta_size_after_one_percent_update(pg_cluster_factory: Any, walg: Any) -> None:
    """After 1% of the rows change (a contiguous range, as a batch job would), the delta
    stores a small fraction of the full backup's bytes."""
    source, env = archiving(pg_cluster_factory, file_env)
    env = {**env, "WALG_DELTA_MAX_STEPS": "1"}
    source.pgbench_init(scale=10)
    full = push(walg, source, env)
    source.psql("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 10000")
    delta = push(walg, source, env)
    full_bytes = sentinel(env, full)["CompressedSize"]
    delta_bytes = sentinel(env, delta)["CompressedSize"]
    print(f"full {full_bytes} B, delta {delta_bytes} B ({delta_bytes / full_bytes:.1%})")
    assert delta_bytes < full_bytes * 0.1


def test_delta_refuses_a_base_from_another_cluster(pg_cluster_factory: Any, walg: Any) -> None:
    """--delta-from-name naming another cluster's backup: one clear error, nothing stored."""
    first, env = archiving(pg_cluster_factory, file_env)
    other_name = push(walg, first, env)
    second = pg_cluster_factory()
    done = walg(
        "backup-push",
        str(second.data_dir),
        "--delta-from-name",
        other_name,
        env={**second.env, **env},
        check=False,
    )
    assert done.returncode != 0
    assert "another cluster" in done.stderr and "Traceback" not in done.stderr
    sentinels = list((Path(env["WALG_FILE_PREFIX"]) / "basebackups_005").glob("*_sentinel.json"))
    assert len(sentinels) == 1


def test_delta_with_a_missing_base_fails_before_writing(pg_cluster_factory: Any, walg: Any) -> None:
    """A delta whose base backup is gone: one clear error, and the target stays empty."""
    source, env = archiving(pg_cluster_factory, file_env)
    env = {**env, "WALG_DELTA_MAX_STEPS": "1"}
    full = push(walg, source, env)
    source.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS v")
    delta = push(walg, source, env)
    (
        Path(env["WALG_FILE_PREFIX"]) / "basebackups_005" / f"{full}_backup_stop_sentinel.json"
    ).unlink()
    target = PgCluster.make_base() / "data"
    done = walg("backup-fetch", str(target), delta, env={**source.env, **env}, check=False)
    assert done.returncode != 0
    assert f"is a delta of {full}, which is not in" in done.stderr
    assert "Traceback" not in done.stderr
    assert not target.exists() or not any(target.iterdir())


def test_delta_chain_on_s3_with_settings_changed_between_backups(
    pg_cluster_factory: Any,
    walg: Any,
    make_s3_storage: Any,  # noqa: F811
    pgp_key: tuple[str, str],  # noqa: F811
) -> None:
    """A full backup (lz4, plain) and a delta on it (brotli, OpenPGP) in S3: the restore
    reads each backup with its own compression and encryption."""
    bucket = make_s3_storage.new_bucket()

    def s3_env(cluster: PgCluster) -> dict[str, str]:
        return {
            "WALG_S3_PREFIX": f"s3://{bucket}/db",
            "AWS_ENDPOINT": make_s3_storage.endpoint,
            "AWS_S3_FORCE_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }

    source, env = archiving(pg_cluster_factory, s3_env)
    source.pgbench_init(scale=1)
    time.sleep(MTIME_MARGIN.total_seconds() + 0.5)
    full = push(walg, source, env)
    source.pgbench_run(seconds=2, clients=2).wait()
    secret = {**env, "WALG_DELTA_MAX_STEPS": "1", "WALG_COMPRESSION_METHOD": "brotli"}
    secret["WALG_PGP_KEY"] = pgp_key[0]
    delta = push(walg, source, secret)
    assert "_D_" in delta
    dump = source.dumpall()
    archive_now(source)
    listed = walg("backup-list", "--json", env={**source.env, **secret}).stdout
    assert {b["backup_name"] for b in json.loads(listed)} == {full, delta}
    restored = fetch_and_recover(
        pg_cluster_factory, walg, {**source.env, **secret}, delta, wrapper(source, secret), RESTORE
    )
    assert restored.dumpall() == dump


def test_delta_across_a_timeline_switch(pg_cluster_factory: Any, walg: Any) -> None:
    """After a point-in-time recovery to before the newest backup finished, a delta on that
    backup would miss pages the new timeline rewrote: it is refused. A base the new
    timeline left only after it finished is fine, and restores."""
    source, env = archiving(pg_cluster_factory, file_env)
    source.pgbench_init(scale=1)
    early = push(walg, source, env)
    source.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS v")
    archive_now(source)
    target_time = source.psql("SELECT now()")
    time.sleep(1.1)
    source.psql("INSERT INTO t SELECT generate_series(1, 5000)")
    late = push(walg, source, env)
    archive_now(source)

    base = PgCluster.make_base()
    walg(
        "backup-fetch",
        str(base / "data"),
        early,
        f"--target-time={target_time}",
        "--target-action=promote",
        env={**source.env, **env},
    )
    branched = pg_cluster_factory(
        adopt=base / "data", base=base, archive_command=f"{wrapper(source, env)} wal-push %p"
    )
    wait_promoted(branched)
    branched.psql("UPDATE pgbench_accounts SET abalance = 1 WHERE aid < 1000")
    for _ in range(4):  # move the new timeline's LSN past the late backup's finish
        branched.psql("CREATE TABLE IF NOT EXISTS w (v int); INSERT INTO w VALUES (1)")
        branched.psql("SELECT pg_switch_wal()")
    deltas = {**env, "WALG_DELTA_MAX_STEPS": "3"}
    refused = walg(
        "backup-push", str(branched.data_dir), env={**branched.env, **deltas}, check=False
    )
    assert refused.returncode != 0
    assert f"cannot take a delta on {late} (timeline 1)" in refused.stderr
    assert "before the base finished" in refused.stderr
    delta = push(walg, branched, deltas, "--delta-from-name", early)
    assert delta.endswith(early[len("base_") :])
    dump = branched.dumpall()
    archive_now(branched)
    restored = fetch_and_recover(
        pg_cluster_factory, walg, {**branched.env, **env}, delta, wrapper(branched, env), RESTORE
    )
    assert restored.dumpall() == dump
