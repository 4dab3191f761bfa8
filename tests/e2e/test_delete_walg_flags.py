"""WAL-G's delete forms on real backups (issue 17): ``before FIND_FULL TIME`` with the time
as backup-list prints it (compared with when each sentinel was written, as WAL-G; with
--use-sentinel-time with the start time), ``retain N --after TIME|NAME``, ``target
--target-user-data``; dry run by default, --confirm deletes exactly the planned set."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from servers.postgres import PgCluster


def planned(output: str) -> set[str]:
    """The backups a delete's printed plan deletes."""
    lines = output.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("backups to delete: ")]
    if not heads:
        return set()
    count = int(lines[heads[0]].split(": ")[1])
    return {line.split()[0] for line in lines[heads[0] + 1 : heads[0] + 1 + count]}


def stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_delete_forms_scripts_use(pg_cluster: PgCluster, walg: Any) -> None:
    """Four backups (full, delta, full, delta as WAL-G's delete_before_time_find_full_test):
    each form plans exactly WAL-G's set, dry runs delete nothing, confirmed runs do."""
    storage = pg_cluster.make_dir("storage")
    env = {**pg_cluster.env, "PGDATA": str(pg_cluster.data_dir),
           "WALG_FILE_PREFIX": str(storage), "WALG_DELTA_MAX_STEPS": "1"}  # fmt: skip
    pg_cluster.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    names = []
    for i in range(4):
        pg_cluster.psql(f"INSERT INTO t SELECT g FROM generate_series(1, {100 * (i + 1)}) g")
        extra = ["--add-user-data", '{"n": 4}'] if i == 3 else []
        names.append(walg("backup-push", *extra, env=env).stdout.strip().splitlines()[-1])
        time.sleep(1.1)  # backup-list's times are to the second
    f1, d1, f2, d2 = names
    assert "_D_" in d1 and "_D_" in d2 and "_D_" not in f1 + f2

    def listing() -> list[str]:
        rows = walg("backup-list", env=env).stdout.strip().splitlines()[1:]
        return [row.split()[0] for row in rows]

    def when(name: str) -> str:
        rows = walg("backup-list", env=env).stdout.strip().splitlines()[1:]
        return next(row.split()[1] for row in rows if row.split()[0] == name)

    def dry(*words: str) -> set[str]:
        return planned(walg("delete", *words, env=env).stdout)

    assert listing() == names
    last = walg("backup-list", env=env).stdout.strip().splitlines()[-1].split()[1]
    assert last == when(d2) and last.endswith("Z")
    assert dry("before", "FIND_FULL", last) == {f1, d1}
    detail = json.loads(walg("backup-list", "--detail", "--json", env=env).stdout)
    started = datetime.fromisoformat(detail[-1]["start_time"]).replace(microsecond=0)
    assert dry("--use-sentinel-time", "before", "FIND_FULL", stamp(started)) == {f1, d1}
    later = stamp(started + timedelta(seconds=1))  # after every start: nothing
    assert dry("--use-sentinel-time", "before", "FIND_FULL", later) == set()
    refused = walg("delete", "before", last, env=env, check=False)
    assert refused.returncode not in (0, 2) and "delta" in refused.stderr

    assert dry("retain", "1", "--after", when(f2)) == {f1, d1}
    assert dry("retain", "1", "--after", when(f1)) == set()
    assert dry("retain", "FULL", "1", "-a", d1) == {f1, d1}
    assert dry("retain", "2", "--after", d2) == {f1, d1}
    refused = walg("delete", "retain", "3", "--after", f2, env=env, check=False)
    assert refused.returncode not in (0, 2) and "delta" in refused.stderr  # d1 is 3rd newest
    assert listing() == names

    walg("delete", "target", "--target-user-data", '{"n": 4.0}', "--confirm", env=env)
    assert listing() == [f1, d1, f2]
    missing = walg("delete", "target", "--target-user-data", '"nobody"', env=env, check=False)
    assert missing.returncode not in (0, 2)
    walg("delete", "--confirm", "before", "FIND_FULL", when(f2), env=env)
    assert listing() == [f2]
    doc = json.loads(walg("backup-list", "--json", env=env).stdout)
    assert [b["backup_name"] for b in doc] == [f2]
