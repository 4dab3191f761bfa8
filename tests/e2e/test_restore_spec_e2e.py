"""``backup-fetch --restore-spec FILE`` on a real backup with a tablespace: WAL-G's spec
(the sentinel's Spec with a new location, as its walg_tablespace_restore_spec_test.sh
writes it) puts the tablespace there; a bad spec is exit 2 with nothing written."""

from __future__ import annotations

import json
import os
from typing import Any

from servers.postgres import PgCluster


def test_restore_spec_moves_a_tablespace(pg_cluster: PgCluster, walg: Any) -> None:
    """The tablespace's link points at the spec's location and its files are there."""
    location = pg_cluster.make_dir("ts1")
    pg_cluster.psql(f"CREATE TABLESPACE ts1 LOCATION '{location}'")
    pg_cluster.psql("CREATE TABLE far TABLESPACE ts1 AS SELECT g FROM generate_series(1, 5000) g")
    oid = pg_cluster.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
    storage = pg_cluster.make_dir("storage")
    env = {**pg_cluster.env, "WALG_FILE_PREFIX": str(storage)}
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    sentinel = next(storage.glob("basebackups_005/*_sentinel.json"))
    recorded = json.loads(sentinel.read_text())["Spec"]  # jq .Spec
    assert recorded["tablespaces"] == [oid]

    base = PgCluster.make_base()
    target, moved = base / "data", base / "new_space"
    spec = base / "spec.json"
    bad = {**recorded, "base_prefix": str(target), oid: {"loc": "relative/x"}}
    spec.write_text(json.dumps(bad))
    refused = walg("backup-fetch", "--restore-spec", str(spec), str(target), "LATEST",
                   env=env, check=False)
    assert refused.returncode == 2 and "restore spec" in refused.stderr
    assert not target.exists() or not any(target.iterdir())

    good = {"base_prefix": str(target), "tablespaces": [oid],
            oid: {"loc": str(moved), "link": f"pg_tblspc/{oid}"}}  # fmt: skip
    spec.write_text(json.dumps(good))
    walg("backup-fetch", "--restore-spec", str(spec), str(target), "LATEST", env=env)
    assert os.readlink(target / "pg_tblspc" / oid) == str(moved)
    assert any(p.is_file() for p in moved.rglob("*")), "no tablespace files at the new place"


def test_restore_spec_base_prefix_elsewhere_restores_into_dir(pg_cluster: PgCluster,
                                                              walg: Any) -> None:
    """A spec whose base_prefix is still the backed-up PGDATA (the sentinel's, unedited):
    as WAL-G, the data goes into the DIR argument; walg warns once, links the tablespace
    from DIR to the spec's location and leaves the live cluster's pg_tblspc alone."""
    location = pg_cluster.make_dir("ts_bp")
    pg_cluster.psql(f"CREATE TABLESPACE ts_bp LOCATION '{location}'")
    pg_cluster.psql("CREATE TABLE far_bp TABLESPACE ts_bp AS SELECT generate_series(1, 500) g")
    oid = pg_cluster.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts_bp'")
    storage = pg_cluster.make_dir("storage_bp")
    env = {**pg_cluster.env, "WALG_FILE_PREFIX": str(storage)}
    walg("backup-push", str(pg_cluster.data_dir), env=env)
    recorded = json.loads(next(storage.glob("basebackups_005/*_sentinel.json")).read_text())
    live_link = pg_cluster.data_dir / "pg_tblspc" / oid
    assert os.readlink(live_link) == str(location)

    base = PgCluster.make_base()
    target, moved, spec = base / "data", base / "moved_bp", base / "spec.json"
    doc = {**recorded["Spec"], oid: {"loc": str(moved), "link": f"pg_tblspc/{oid}"}}
    assert os.path.realpath(doc["base_prefix"]) == os.path.realpath(pg_cluster.data_dir)
    spec.write_text(json.dumps(doc))
    done = walg("backup-fetch", "--restore-spec", str(spec), str(target), "LATEST", env=env)
    warned = [line for line in done.stderr.splitlines() if "base_prefix" in line]
    assert len(warned) == 1 and str(target) in warned[0]
    assert (target / "PG_VERSION").is_file()
    assert os.readlink(target / "pg_tblspc" / oid) == str(moved)
    assert any(p.is_file() for p in moved.rglob("*")), "no tablespace files at the new place"
    assert os.readlink(live_link) == str(location), "the live cluster's link was touched"
