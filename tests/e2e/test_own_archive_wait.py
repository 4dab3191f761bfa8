"""On a primary, backup-push makes pg_backup_stop's archive wait itself (issue 15): it
still returns only once archive_command has archived the stop segment and the backup
history file, even with WALG_ARCHIVE_CHECK=false, where nothing else checks."""

from __future__ import annotations

import json
from typing import Any

from conftest_helpers import WALG  # type: ignore[import-not-found]


def test_push_returns_only_once_the_stop_segment_is_archived(
    pg_cluster_factory: Any, walg: Any
) -> None:
    """A slow archive_command (2 s) and no archive check: when backup-push exits 0, the
    archive status of its stop segment and of its backup history file is .done."""
    cluster = pg_cluster_factory()
    storage = cluster.make_dir("storage")
    archive = cluster.make_dir("bin") / "archive.sh"
    archive.write_text(f"#!/bin/sh\nsleep 2\nexport WALG_FILE_PREFIX='{storage}'\n"
                       f"exec {WALG} wal-push \"$1\"\n")
    archive.chmod(0o755)
    cluster.archive_command = f"{archive} %p"
    cluster.configure()
    cluster.restart()
    env = {**cluster.env, "WALG_FILE_PREFIX": str(storage), "WALG_ARCHIVE_CHECK": "false"}
    done = walg("backup-push", str(cluster.data_dir), check=False, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    status = cluster.data_dir / "pg_wal" / "archive_status"
    (sentinel,) = storage.glob("basebackups_005/*_sentinel.json")
    finish = json.loads(sentinel.read_text())["FinishLSN"]
    segno = (finish - 1) // (16 << 20)
    stop = f"00000001{segno >> 8:08X}{segno & 0xFF:08X}"
    assert (status / f"{stop}.done").exists(), sorted(p.name for p in status.iterdir())
    histories = list(status.glob("*.backup.*"))
    assert histories and all(p.suffix == ".done" for p in histories), histories
    assert list(storage.glob(f"wal_005/{stop}.*"))
