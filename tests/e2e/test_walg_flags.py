"""WAL-G's command-line habits on a real cluster: backup-push without PGDATA, UserData
written by --add-user-data and used by --delta-from-user-data and backup-fetch
--target-user-data, ``delete --confirm --use-sentinel-time`` before the mode, --config
after the command (a YAML file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servers.postgres import PgCluster


def sentinel(storage: Path, name: str) -> dict[str, Any]:
    path = storage / "basebackups_005" / f"{name}_backup_stop_sentinel.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_user_data_flags_choose_bases_and_restores(pg_cluster: PgCluster, walg: Any) -> None:
    """--add-user-data lands in the sentinel and metadata; --delta-from-user-data bases a
    delta on that backup (with deltas otherwise off); backup-fetch --target-user-data
    restores it; delete --confirm --use-sentinel-time retain FULL 1 keeps the newest full."""
    storage = pg_cluster.make_dir("storage")
    config = pg_cluster.make_dir("etc") / "walg.yaml"
    config.write_text(f"WALG_FILE_PREFIX: {storage}\nWALG_DELTA_MAX_STEPS: 0\n")
    env = {**pg_cluster.env, "PGDATA": str(pg_cluster.data_dir)}
    pg_cluster.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")

    def push(*flags: str) -> str:
        done = walg("backup-push", *flags, "--config", str(config), env=env)
        return str(done.stdout.strip().splitlines()[-1])

    first = push("--add-user-data", '{"tag": "first", "n": 1}')
    pg_cluster.psql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
    second = push("--delta-from-user-data", '{"n": 1.0, "tag": "first"}',
                  "--add-user-data", '"second"')
    assert sentinel(storage, first)["UserData"] == {"tag": "first", "n": 1}
    meta = json.loads((storage / "basebackups_005" / first / "metadata.json").read_text())
    assert meta["user_data"] == {"tag": "first", "n": 1}
    assert sentinel(storage, second)["DeltaFrom"] == first
    assert sentinel(storage, second)["UserData"] == "second"

    target = PgCluster.make_base() / "data"
    done = walg("backup-fetch", str(target), "--target-user-data", '{"tag": "first", "n": 1}',
                "--reverse-unpack", "--skip-redundant-tars", "--config", str(config), env=env)
    assert done.stdout.strip().splitlines()[-1] == first
    assert (target / "PG_VERSION").is_file() and (target / "global" / "pg_control").is_file()

    missing = walg("backup-fetch", str(target.parent / "x"), "--target-user-data", '"none"',
                   "--config", str(config), env=env, check=False)
    assert missing.returncode != 2 and "no backup" in missing.stderr
    assert not (target.parent / "x" / "global" / "pg_control").exists()

    third = push("--full", "--add-user-data", '"third"')
    walg("delete", "--confirm", "--use-sentinel-time", "retain", "FULL", "1",
         "--config", str(config), env=env)
    listed = walg("backup-list", "--json", f"--config={config}", env=env).stdout
    assert [b["backup_name"] for b in json.loads(listed)] == [third]
