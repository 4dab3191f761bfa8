"""backup-push --permanent of a delta on a real cluster marks its whole base chain, as
backup-mark does, so that no delete removes a base the permanent delta needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest_helpers import push  # type: ignore[import-not-found]
from test_pitr import archiving, file_env  # type: ignore[import-not-found]


def marks(env: dict[str, str], name: str) -> tuple[bool, bool]:
    """(metadata.json is_permanent, sentinel IsPermanent) of backup ``name``."""
    base = Path(env["WALG_FILE_PREFIX"]) / "basebackups_005"
    meta = json.loads((base / name / "metadata.json").read_text())
    sentinel = json.loads((base / f"{name}_backup_stop_sentinel.json").read_text())
    return bool(meta["is_permanent"]), bool(sentinel["IsPermanent"])


def test_permanent_delta_marks_its_base_chain(pg_cluster_factory: Any, walg: Any) -> None:
    """A full backup, a delta, then a second delta pushed with --permanent: all three are
    permanent in metadata.json and in the sentinel; a later impermanent push is not."""
    source, env = archiving(pg_cluster_factory, file_env)
    env = {**env, "WALG_DELTA_MAX_STEPS": "2"}
    source.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
    full = push(walg, source, env)
    source.psql("UPDATE t SET g = g + 1 WHERE g % 10 = 0")
    first = push(walg, source, env)
    source.psql("UPDATE t SET g = g + 1 WHERE g % 7 = 0")
    second = push(walg, source, env, "--permanent")
    assert "_D_" in first and "_D_" in second
    for name in (full, first, second):
        assert marks(env, name) == (True, True), name
    source.psql("UPDATE t SET g = g + 1 WHERE g % 3 = 0")
    later = push(walg, source, env, "--full")
    assert marks(env, later) == (False, False)
    done = walg("delete", "retain", "FULL", "1", "--confirm", env={**source.env, **env})
    listed = walg("backup-list", env={**source.env, **env}).stdout
    assert all(name in listed for name in (full, first, second, later)), done.stdout
