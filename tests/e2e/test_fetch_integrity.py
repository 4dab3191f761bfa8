"""backup-fetch exits 0 only for a whole backup, and never leaves a restore that looks
complete when it is not; pg_wal linked elsewhere (initdb -X) never leads a restore there."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
from conftest_helpers import (  # type: ignore[import-not-found]
    WALG,
    archive_now,
    fetch_and_recover,
    push,
    scrubbed_env,
)
from servers.postgres import PgCluster, postgres_unavailable
from test_pitr import archiving, file_env, wrapper  # type: ignore[import-not-found]

COUNT = "SELECT count(*) FROM pgbench_accounts"


@pytest.fixture(scope="module")
def pushed() -> Iterator[tuple[Path, str]]:
    """One backup of a pgbench cluster cut into parts of 1 MiB: (its storage, its name)."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster.create()
    try:
        store = cluster.make_dir("storage")
        storage = {"WALG_FILE_PREFIX": str(store)}
        cluster.archive_command = f"{wrapper(cluster, storage)} wal-push %p"
        cluster.configure()
        cluster.start()
        cluster.pgbench_init(scale=1)
        env = {**scrubbed_env(), **cluster.env, **storage, "WALG_TAR_SIZE_THRESHOLD": "1048576"}
        done = subprocess.run([WALG, "backup-push", str(cluster.data_dir)], env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        yield store, done.stdout.strip().splitlines()[-1]
    finally:
        cluster.cleanup()


@pytest.fixture
def damaged(pushed: tuple[Path, str], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the pushed backup's storage to damage: (the backup's folder, walg's env)."""
    store, name = pushed
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy / "basebackups_005" / name, copy


def fetch_fails(walg: Any, store: Path, target: Path) -> str:
    """Run backup-fetch LATEST, expect a failure with one ERROR line; return that line."""
    done = walg("backup-fetch", str(target), "LATEST", env={"WALG_FILE_PREFIX": str(store)},
                check=False)
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, done.stderr
    assert not (target / "global" / "pg_control").exists()
    return str(errors[0])


def read_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_missing_data_part_fails_before_writing(damaged: tuple[Path, Path], walg: Any,
                                                tmp_path: Path) -> None:
    """A deleted data part is named, and nothing is written to the target."""
    backup, store = damaged
    parts = sorted((backup / "tar_partitions").glob("part_*"))
    assert len(parts) > 3, parts
    parts[2].unlink()
    error = fetch_fails(walg, store, tmp_path / "restore")
    assert parts[2].name in error
    assert not (tmp_path / "restore").exists() or not os.listdir(tmp_path / "restore")


def test_missing_backup_label_part_fails_before_writing(damaged: tuple[Path, Path], walg: Any,
                                                        tmp_path: Path) -> None:
    """A deleted backup_label part is named, and nothing is written to the target."""
    backup, store = damaged
    (label,) = (backup / "tar_partitions").glob("backup_label.tar*")
    label.unlink()
    assert label.name in fetch_fails(walg, store, tmp_path / "restore")


def test_file_missing_from_its_part_is_named(damaged: tuple[Path, Path], walg: Any,
                                             tmp_path: Path) -> None:
    """A file the metadata lists but no part holds fails the restore after extraction."""
    backup, store = damaged
    path = backup / "files_metadata.json"
    doc = read_json(path)
    some = next(iter(doc["Files"].values()))
    doc["Files"]["/base/1/99999"] = some
    first = sorted(doc["TarFileSets"])[0]
    doc["TarFileSets"][first].append("/base/1/99999")
    path.write_text(json.dumps(doc))
    target = tmp_path / "restore"
    assert "base/1/99999 listed in its files metadata" in fetch_fails(walg, store, target)
    assert (target / "PG_VERSION").exists()  # extracted, checked, and left without pg_control


def test_wrong_size_is_named(damaged: tuple[Path, Path], walg: Any, tmp_path: Path) -> None:
    """A file whose restored size differs from the size the backup recorded fails the restore."""
    backup, store = damaged
    path = backup / "files_metadata.json"
    doc = read_json(path)
    doc["Files"]["/PG_VERSION"]["WalgSize"] += 1
    path.write_text(json.dumps(doc))
    assert "PG_VERSION from part_" in fetch_fails(walg, store, tmp_path / "restore")


def test_bad_pg_control_is_not_left_behind(damaged: tuple[Path, Path], walg: Any,
                                           tmp_path: Path) -> None:
    """A pg_control that fails its checksum fails the restore and is removed again."""
    backup, store = damaged
    path = backup / "files_metadata.json"
    doc = read_json(path)
    doc["Files"]["/global/pg_control"]["WalgCrc32c"] = "00000000"
    path.write_text(json.dumps(doc))
    target = tmp_path / "restore"
    assert "global/pg_control from pg_control.tar" in fetch_fails(walg, store, target)
    assert (target / "backup_label").exists()


def test_backup_without_pg_wal_restores_one(damaged: tuple[Path, Path], walg: Any,
                                            tmp_path: Path) -> None:
    """A backup that stored no pg_wal (WAL-G leaves out one that was a symlink) restores
    with an empty pg_wal, without which PostgreSQL cannot start."""
    backup, store = damaged
    part = backup / "tar_partitions" / "part_001.tar.lz4"
    data = io.BytesIO(lz4.frame.decompress(part.read_bytes()))
    out = io.BytesIO()
    with tarfile.open(fileobj=data) as source, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in source.getmembers():
            if member.name.strip("/").split("/")[0] != "pg_wal":
                tar.addfile(member, source.extractfile(member))
    part.write_bytes(lz4.frame.compress(out.getvalue()))
    target = tmp_path / "restore"
    walg("backup-fetch", str(target), "LATEST", env={"WALG_FILE_PREFIX": str(store)})
    assert (target / "pg_wal" / "archive_status").is_dir()
    assert (target / "global" / "pg_control").exists()


def test_old_format_backup_with_a_missing_part_is_caught(damaged: tuple[Path, Path], walg: Any,
                                                         tmp_path: Path) -> None:
    """With Files in the sentinel and no files_metadata.json (old WAL-G), a deleted part's
    files are named after extraction."""
    backup, store = damaged
    metadata = read_json(backup / "files_metadata.json")
    (backup / "files_metadata.json").unlink()
    sentinel_path = backup.parent / f"{backup.name}_backup_stop_sentinel.json"
    sentinel = read_json(sentinel_path)
    sentinel["Files"] = metadata["Files"]
    sentinel_path.write_text(json.dumps(sentinel))
    part = sorted(p for p, files in metadata["TarFileSets"].items()
                  if p.startswith("part_") and files)[-1]
    (backup / "tar_partitions" / part).unlink()
    error = fetch_fails(walg, store, tmp_path / "restore")
    assert "listed in its files metadata but not found" in error
    assert metadata["TarFileSets"][part][0].lstrip("/") in error


def test_symlinked_pg_wal_is_restored_as_a_directory(pg_cluster_factory: Any, walg: Any,
                                                     tmp_path: Path) -> None:
    """A cluster made with initdb -X restores with its own empty pg_wal directory, recovers
    from the archive, and leaves the original WAL directory untouched."""
    factory = functools.partial(pg_cluster_factory, wal_dir="wal_outside")
    source, env = archiving(factory, file_env)
    wal = source.base / "wal_outside"
    assert (source.data_dir / "pg_wal").is_symlink()
    source.pgbench_init(scale=1)
    name = push(walg, source, env)
    archive_now(source)
    expected = source.psql(COUNT)
    source.stop()
    before = {p.name: p.stat().st_mtime_ns for p in wal.rglob("*")}

    walg("backup-fetch", str(tmp_path / "data"), name, env=env)
    restored_wal = tmp_path / "data" / "pg_wal"
    assert restored_wal.is_dir() and not restored_wal.is_symlink()
    assert list(restored_wal.iterdir()) == []

    script = wrapper(source, env)
    restored = fetch_and_recover(pg_cluster_factory, walg, env, name, script)
    assert restored.psql(COUNT) == expected
    assert not (restored.data_dir / "pg_wal").is_symlink()
    assert {p.name: p.stat().st_mtime_ns for p in wal.rglob("*")} == before


def test_delta_with_a_missing_part_of_its_base_fails_before_writing(
    pg_cluster_factory: Any, walg: Any, tmp_path: Path
) -> None:
    """A part of the full backup that holds a file the delta builds on, deleted: restoring
    the delta names that part and writes nothing."""
    source, env = archiving(pg_cluster_factory, file_env)
    env = {**env, "WALG_TAR_SIZE_THRESHOLD": "1048576", "WALG_DELTA_MAX_STEPS": "1"}
    source.pgbench_init(scale=1)
    full = push(walg, source, env)
    source.psql("UPDATE pgbench_accounts SET abalance = 1 WHERE aid % 100 = 0")
    delta = push(walg, source, env)
    folder = Path(env["WALG_FILE_PREFIX"]) / "basebackups_005"
    incremented = {name for name, desc in
                   read_json(folder / delta / "files_metadata.json")["Files"].items()
                   if desc["IsIncremented"]}
    sets = read_json(folder / full / "files_metadata.json")["TarFileSets"]
    part = next(p for p, files in sorted(sets.items()) if incremented & set(files))
    (folder / full / "tar_partitions" / part).unlink()
    target = tmp_path / "restore"
    done = walg("backup-fetch", str(target), delta, env=env, check=False)
    assert done.returncode != 0
    assert f"backup {full} is incomplete: {part} missing" in done.stderr
    assert not target.exists() or not os.listdir(target)
