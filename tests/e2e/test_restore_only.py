"""backup-fetch --restore-only on a real cluster: DatabasesByNames recorded by backup-push,
one database restored, the other left out but droppable, unknown names refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest_helpers import archive_now, push, wait_promoted  # type: ignore[import-not-found]
from servers.postgres import PgCluster
from test_pitr import archiving, file_env, wrapper  # type: ignore[import-not-found]

RESTORE = {"recovery_target": "'immediate'", "recovery_target_action": "'promote'"}


def _files_metadata(env: dict[str, str], name: str) -> dict[str, Any]:
    path = Path(env["WALG_FILE_PREFIX"]) / "basebackups_005" / name / "files_metadata.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_restore_only_one_database(pg_cluster_factory: Any, walg: Any) -> None:
    """db1 restored intact, db2's tables left out (its catalogs kept: it can be dropped)."""
    source, env = archiving(pg_cluster_factory, file_env)
    for db in ("db1", "db2"):
        source.psql(f"CREATE DATABASE {db}")
        source.psql(
            "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
            database=db,
        )
    source.psql("CREATE TABLE p (id int) PARTITION BY RANGE (id)", database="db1")
    source.psql("CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100)", database="db1")
    expected = source.psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t", "db1")
    name = push(walg, source, env)
    archive_now(source)

    dbs = _files_metadata(env, name)["DatabasesByNames"]
    assert {"postgres", "template1", "db1", "db2"} <= set(dbs)
    oids = {db: int(source.psql(f"SELECT oid FROM pg_database WHERE datname = '{db}'"))
            for db in ("db1", "db2")}
    assert dbs["db1"]["oid"] == oids["db1"]
    table = dbs["db1"]["tables_new"]["public.t"]
    assert set(table) == {"oid", "relfilenode"}
    assert table["relfilenode"] == int(
        source.psql("SELECT relfilenode FROM pg_class WHERE relname = 't'", "db1"))
    assert set(dbs["db1"]["tables_new"]["public.p"]["subtables"]) == {"public.p1"}
    assert "public.p1" not in dbs["db1"]["tables_new"]

    full_env = {**source.env, **env}
    unknown = PgCluster.make_base() / "data"
    done = walg("backup-fetch", str(unknown), name, "--restore-only=db1,nosuchdb",
                env=full_env, check=False)
    assert done.returncode == 1, done.stderr
    assert "'nosuchdb'" in done.stderr and "Traceback" not in done.stderr
    assert not unknown.exists() or not any(unknown.iterdir())

    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), name, "--restore-only", "db1", env=full_env)
    db2_dir = base / "data" / "base" / str(oids["db2"])
    t2 = dbs["db2"]["tables_new"]["public.t"]["relfilenode"]
    assert not (db2_dir / str(t2)).exists()
    assert (db2_dir / "PG_VERSION").exists()
    (base / "data" / "recovery.signal").touch()
    restored = pg_cluster_factory(
        adopt=base / "data", base=base, archive_command=None,
        restore_command=f"{wrapper(source, env)} wal-fetch %f %p", settings=RESTORE,
    )
    wait_promoted(restored)
    assert restored.psql(
        "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t", "db1") == expected
    restored.psql("DROP DATABASE db2")
    assert restored.psql("SELECT count(*) FROM pg_database WHERE datname = 'db2'") == "0"
    restored.stop()
