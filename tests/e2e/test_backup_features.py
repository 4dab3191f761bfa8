"""backup-push/backup-fetch with encryption, tablespaces and S3 storage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_helpers import archive_now  # type: ignore[import-not-found]
from servers.postgres import PgCluster
from servers.s3 import make_s3_storage, moto_server  # noqa: F401

CHECK = "SELECT md5(string_agg(v, ',' ORDER BY id)) FROM {table}"


def gpg(home: str, *args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty", *args],
                          input=data, capture_output=True, check=True, timeout=60)
    return done.stdout


@pytest.fixture(scope="module")
def pgp_key() -> Iterator[tuple[str, str]]:
    """(armored private key, keyring home) of a throwaway RSA key (what WAL-G reads)."""
    home = tempfile.mkdtemp(prefix="walg-e2e-gpg-")
    gpg(home, "--passphrase", "", "--quick-gen-key", "walg e2e", "rsa2048", "sign,encr", "never")
    armored = gpg(home, "--armor", "--export-secret-keys").decode()
    yield armored, home
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
    shutil.rmtree(home, ignore_errors=True)


def archived(cluster: PgCluster) -> Path:
    archive = cluster.make_dir("archive")
    cluster.archive_command = f"cp %p {archive}/%f"
    cluster.configure()
    cluster.restart()
    return archive


def start_restored(factory: Any, data: Path, base: Path, archive: Path) -> PgCluster:
    (data / "recovery.signal").touch()
    return factory(adopt=data, base=base, archive_command=None,
                   restore_command=f"cp {archive}/%f %p",
                   settings={"recovery_target": "'immediate'",
                             "recovery_target_action": "'promote'"})


def test_encrypted_backup_round_trip(pg_cluster_factory: Any, walg: Any,
                                     pgp_key: tuple[str, str]) -> None:
    """With WALG_PGP_KEY every object is OpenPGP (plain gpg decrypts it) and restores."""
    source = pg_cluster_factory()
    archive = archived(source)
    source.psql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) "
                "FROM generate_series(1, 20000) g")
    expected = source.psql(CHECK.format(table="t"))
    storage = source.make_dir("storage")
    env = {**source.env, "WALG_FILE_PREFIX": str(storage), "WALG_PGP_KEY": pgp_key[0]}
    walg("backup-push", str(source.data_dir), env=env)
    part = next(storage.glob("basebackups_005/*/tar_partitions/part_001.tar.lz4"))
    plain = gpg(pgp_key[1], "--decrypt", data=part.read_bytes())
    assert plain[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic under the encryption
    sentinel = json.loads(next(storage.glob("basebackups_005/*_sentinel.json")).read_text())
    assert sentinel["WalgEncrypted"] is True
    no_key = {k: v for k, v in env.items() if k != "WALG_PGP_KEY"}
    refused = walg("backup-fetch", "/tmp/walg-never-created", "LATEST", env=no_key, check=False)
    assert refused.returncode == 1 and "WALG_PGP_KEY" in refused.stderr
    assert not os.path.exists("/tmp/walg-never-created")
    archive_now(source)
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), "LATEST", env=env)
    restored = start_restored(pg_cluster_factory, base / "data", base, archive)
    assert restored.psql(CHECK.format(table="t")) == expected


def test_tablespace_is_restored_and_can_be_moved(pg_cluster_factory: Any, walg: Any) -> None:
    """A tablespace's files come back at a new location given with --tablespace-map."""
    source = pg_cluster_factory()
    archive = archived(source)
    location = source.make_dir("ts1")
    source.psql(f"CREATE TABLESPACE ts1 LOCATION '{location}'")
    source.psql("CREATE TABLE far (id int, v text) TABLESPACE ts1; INSERT INTO far "
                "SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    expected = source.psql(CHECK.format(table="far"))
    oid = source.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
    storage = source.make_dir("storage")
    env = {**source.env, "WALG_FILE_PREFIX": str(storage)}
    walg("backup-push", str(source.data_dir), env=env)
    archive_now(source)
    sentinel = json.loads(next(storage.glob("basebackups_005/*_sentinel.json")).read_text())
    assert sentinel["Spec"]["tablespaces"] == [oid]
    assert sentinel["Spec"][oid]["loc"].rstrip("/") == str(location)
    base = PgCluster.make_base()
    moved = base / "ts1-moved"
    typo = walg("backup-fetch", str(base / "data"), "LATEST", f"--tablespace-map=9{oid}={moved}",
                env=env, check=False)  # a mistyped OID is refused, never silently unused
    assert typo.returncode == 2 and f"9{oid}" in typo.stderr, typo.stderr
    assert not moved.exists() and not any((base / "data").rglob("*"))
    walg("backup-fetch", str(base / "data"), "LATEST", f"--tablespace-map={oid}={moved}", env=env)
    assert os.readlink(base / "data" / "pg_tblspc" / oid) == str(moved)
    assert any(moved.rglob("*")), "no tablespace files restored at the new location"
    # As WAL-G: the links are made by backup-fetch and no tablespace_map is restored (with
    # one, PostgreSQL would re-create the links from it at its first start).
    assert not (base / "data" / "tablespace_map").exists()
    restored = start_restored(pg_cluster_factory, base / "data", base, archive)
    assert os.readlink(base / "data" / "pg_tblspc" / oid) == str(moved)
    source.stop()  # the restored cluster must read its own copy, not the source's files
    assert restored.psql(CHECK.format(table="far")) == expected


def test_backup_on_s3(pg_cluster_factory: Any, walg: Any, make_s3_storage: Any) -> None:  # noqa: F811
    """backup-push/backup-list/backup-fetch against S3 (moto), path-style addressing."""
    source = pg_cluster_factory()
    archive = archived(source)
    source.pgbench_init(scale=1)
    expected = source.psql("SELECT sum(abalance), count(*) FROM pgbench_accounts")
    bucket = make_s3_storage.new_bucket()
    env = {**source.env, "WALG_S3_PREFIX": f"s3://{bucket}/cluster1",
           "AWS_ENDPOINT": make_s3_storage.endpoint, "AWS_S3_FORCE_PATH_STYLE": "true",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "WALG_COMPRESSION_METHOD": "brotli"}
    name = walg("backup-push", str(source.data_dir), env=env).stdout.strip()
    keys = [o["Key"] for o in make_s3_storage.client.list_objects_v2(
        Bucket=bucket, Prefix="cluster1/")["Contents"]]
    assert f"cluster1/basebackups_005/{name}_backup_stop_sentinel.json" in keys
    assert f"cluster1/basebackups_005/{name}/tar_partitions/pg_control.tar.br" in keys
    assert name in walg("backup-list", env=env).stdout
    archive_now(source)
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), name, env=env)
    restored = start_restored(pg_cluster_factory, base / "data", base, archive)
    assert restored.psql("SELECT sum(abalance), count(*) FROM pgbench_accounts") == expected


def test_backup_from_a_standby(pg_cluster_factory: Any, walg: Any) -> None:
    """backup-push runs on a hot standby, and the backup restores with the primary's WAL."""
    primary = pg_cluster_factory()
    archive = archived(primary)
    primary.psql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) "
                 "FROM generate_series(1, 10000) g")
    base = PgCluster.make_base()
    subprocess.run(
        [str(primary.bin / "pg_basebackup"), "-D", str(base / "data"), "-R", "-X", "stream",
         "-c", "fast", "-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres",
         "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )
    standby = pg_cluster_factory(adopt=base / "data", base=base, archive_command=None)
    assert standby.psql("SELECT pg_is_in_recovery()") == "t"
    expected = primary.psql(CHECK.format(table="t"))
    storage = standby.make_dir("storage")
    env = {**standby.env, "WALG_FILE_PREFIX": str(storage)}
    name = walg("backup-push", str(standby.data_dir), env=env).stdout.strip()
    label = subprocess.run(["lz4", "-dc", str(next(storage.glob(
        f"basebackups_005/{name}/tar_partitions/backup_label.tar.lz4")))],
        capture_output=True, check=True).stdout
    assert b"BACKUP FROM: standby" in label
    archive_now(primary)
    restored_base = PgCluster.make_base()
    walg("backup-fetch", str(restored_base / "data"), name, env=env)
    restored = start_restored(pg_cluster_factory, restored_base / "data", restored_base, archive)
    assert restored.psql(CHECK.format(table="t")) == expected
