"""``wal-g delete`` and ``wal-g backup-mark`` on a real cluster archiving with wal-g: after
the deletion every retained backup still restores and replays its WAL with wal-fetch."""

from __future__ import annotations

from typing import Any

import pytest
from conftest_helpers import (  # type: ignore[import-not-found]
    archive_now,
    fetch_and_recover,
    push,
)
from servers.logtext import untimed
from servers.postgres import PgCluster
from servers.s3 import make_s3_storage, moto_server
from test_pitr import wrapper  # type: ignore[import-not-found]

from walg.backup.retention import classify_wal_key, wal_position
from walg.format import layout
from walg.storage.base import Storage
from walg.storage.file import FileStorage

__all__ = ["make_s3_storage", "moto_server"]  # fixtures, imported for pytest

IMMEDIATE = {"recovery_target": "'immediate'", "recovery_target_action": "'promote'"}
STEPS = "SELECT string_agg(step || ':' || n, ',' ORDER BY step) FROM " \
        "(SELECT step, count(*) AS n FROM marker GROUP BY step) s"  # fmt: skip


def storage_for(backend: str, cluster: PgCluster, s3: Any) -> tuple[dict[str, str], Storage]:
    """walg's environment for ``backend`` (a postgres-owned directory, or a new bucket on
    the moto server) and the same storage opened here, for looking at what is stored."""
    if backend == "file":
        folder = cluster.make_dir("storage")
        return {"WALG_FILE_PREFIX": str(folder)}, FileStorage(str(folder))
    bucket = s3.new_bucket()
    env = {"WALG_S3_PREFIX": f"s3://{bucket}/db", "AWS_ENDPOINT": s3.endpoint,
           "AWS_S3_FORCE_PATH_STYLE": "true", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}  # fmt: skip
    return env, s3(bucket=bucket, path="db")


def wal_positions(storage: Storage) -> list[int]:
    found = []
    for info in storage.list_objects(layout.WAL + "/"):
        kind = classify_wal_key(info.name)
        if kind is not None and kind[1].value == "segment":
            found.append(wal_position(kind[0]))
    return sorted(found)


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_retain_with_a_permanent_backup_keeps_every_kept_backup_restorable(
    pg_cluster_factory: Any, walg: Any, make_s3_storage: Any, backend: str
) -> None:
    """Four backups with WAL between them; the oldest is marked permanent; retain 2 deletes
    only the second and the WAL that no kept backup needs. The permanent backup restores to
    its own end, the two newest replay every archived segment to the latest data."""
    source = pg_cluster_factory()
    env, storage = storage_for(backend, source, make_s3_storage)
    script = wrapper(source, env)
    source.archive_command = f"{script} wal-push %p"
    source.configure()
    source.restart()
    source.psql("CREATE TABLE marker (step int, filler text)")
    names, states = [], []
    for step in range(1, 5):
        source.psql(
            f"INSERT INTO marker SELECT {step}, repeat('x', 200) FROM generate_series(1, 3000)"
        )
        archive_now(source)
        names.append(push(walg, source, env))
        states.append(source.psql(STEPS))
    source.psql("INSERT INTO marker VALUES (5, 'after the last backup')")
    archive_now(source)
    latest = source.psql(STEPS)
    assert len(set(names)) == 4

    marked = walg("backup-mark", names[0], env=env)
    assert marked.stdout == f"marked {names[0]} permanent\n"
    before = list(storage.list_objects())
    dry = walg("delete", "retain", "2", env=env)
    assert list(storage.list_objects()) == before
    lines = dry.stdout.splitlines()
    assert lines[lines.index("backups to delete: 1") + 1].split()[0] == names[1]
    assert "WAL files to delete:" in dry.stdout and "[info" not in dry.stdout

    walg("delete", "retain", "2", "--confirm", env=env)
    listed = walg("backup-list", env=env).stdout.splitlines()[1:]
    assert [line.split()[0] for line in listed] == [names[0], names[2], names[3]]
    positions = wal_positions(storage)
    horizon = wal_position(names[2].removeprefix("base_"))
    first_kept = wal_position(names[0].removeprefix("base_"))
    gone = [p for p in range(first_kept, horizon) if p not in positions]
    assert gone, "no WAL between the permanent backup and the retained ones was deleted"
    assert all(p < horizon for p in gone)
    assert first_kept in positions  # the permanent backup's own WAL stays

    env_pg = {**source.env, **env}
    old = fetch_and_recover(pg_cluster_factory, walg, env_pg, names[0], script, IMMEDIATE)
    assert old.psql(STEPS) == states[0]
    for name in names[2:]:
        restored = fetch_and_recover(pg_cluster_factory, walg, env_pg, name, script)
        assert restored.psql(STEPS) == latest


def test_retain_and_target_respect_delta_chains(pg_cluster_factory: Any, walg: Any) -> None:
    """With WALG_DELTA_MAX_STEPS=2 (F1 D1 D2 F2 D3 D4): retain 2 refuses (the 2nd newest
    is a delta), retain FIND_FULL 2 deletes the first chain only, target D4 deletes just
    D4; D3 then restores through its full backup to exactly its data."""
    source = pg_cluster_factory()
    storage = source.make_dir("storage")
    env = {"WALG_FILE_PREFIX": str(storage)}
    script = wrapper(source, env)
    source.archive_command = f"{script} wal-push %p"
    source.configure()
    source.restart()
    source.psql("CREATE TABLE marker (step int, filler text)")
    delta_env = {**env, "WALG_DELTA_MAX_STEPS": "2"}
    names, states = [], []
    for step in range(1, 7):
        source.psql(f"INSERT INTO marker SELECT {step}, 'x' FROM generate_series(1, 500)")
        names.append(push(walg, source, delta_env))
        states.append(source.psql(STEPS))
    archive_now(source)
    f1, d1, d2, f2, d3, d4 = names
    assert "_D_" not in f1 and "_D_" not in f2, names
    assert all("_D_" in n for n in (d1, d2, d3, d4)), names

    refused = walg("delete", "retain", "2", "--confirm", env=env, check=False)
    assert refused.returncode == 1
    assert f"ERROR: {d3} (the 2nd newest backup) is a delta backup" in untimed(refused.stderr)
    assert "retain FIND_FULL 2" in refused.stderr

    done = walg("delete", "retain", "FIND_FULL", "2", "--confirm", env=env).stdout.splitlines()
    section = done[done.index("backups to delete: 3") + 1 : done.index("backups kept: 3")]
    assert [line.split()[0] for line in section] == [d2, d1, f1]

    target = walg("delete", "target", d4, "--confirm", env=env).stdout
    assert f"backups to delete: 1\n  {d4}" in target
    listed = walg("backup-list", env=env).stdout.splitlines()[1:]
    assert [line.split()[0] for line in listed] == [f2, d3]

    restored = fetch_and_recover(
        pg_cluster_factory, walg, {**source.env, **env}, d3, script, IMMEDIATE
    )
    assert restored.psql(STEPS) == states[4]
