"""WALG_COMPRESSION_METHOD=none (WAL-G's full_backup_test_compression_none_encryption script):
objects are stored as they are, named as WAL-G's none names them (wal_005/<segment>,
part_001.tar), and archive, backup-push, backup-verify, backup-fetch and wal-fetch work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest_helpers import (  # type: ignore[import-not-found]
    archive_now,
    fetch_and_recover,
    push,
)
from test_pitr import ACCOUNTS, wrapper  # type: ignore[import-not-found]

WalgRunner = Any
SEGMENT = re.compile(r"[0-9A-F]{24}")


def test_none_round_trip(pg_cluster_factory, walg: WalgRunner, tmp_path: Path) -> None:
    """Segments and parts have no compression extension, hold the plain bytes, and restore."""
    source = pg_cluster_factory()
    env = {"WALG_FILE_PREFIX": str(source.make_dir("storage")), "WALG_COMPRESSION_METHOD": "none"}
    script = wrapper(source, env)
    source.archive_command = f"{script} wal-push %p"
    source.configure()
    source.restart()
    source.pgbench_init(scale=1)
    name = push(walg, source, env)
    source.pgbench_run(seconds=2, clients=2).wait()
    expected = source.psql(ACCOUNTS)
    segment = archive_now(source)

    storage = Path(env["WALG_FILE_PREFIX"])
    wal = sorted(p.name for p in (storage / "wal_005").iterdir() if p.is_file())
    assert segment in wal and all(SEGMENT.fullmatch(n) or n.endswith(".backup") for n in wal)
    stored = (storage / "wal_005" / segment).read_bytes()
    assert len(stored) == 16 * 1024 * 1024 and stored[1:2] == b"\xd1"  # a WAL page header
    folder = storage / "basebackups_005" / name / "tar_partitions"
    parts = sorted(p.name for p in folder.iterdir())
    assert parts == ["backup_label.tar", "part_001.tar", "pg_control.tar"]

    full = {**source.env, **env}
    walg("backup-verify", name, env=full)
    # the overwrite check finds the stored copy under its extension-less name: same bytes
    # pass, different bytes are refused
    full_checked = {**full, "WALG_PREVENT_WAL_OVERWRITE": "true"}
    copy = tmp_path / "pg_wal" / segment
    copy.parent.mkdir()
    copy.write_bytes(stored)
    walg("wal-push", str(copy), env=full_checked)
    copy.write_bytes(stored[:-1] + bytes([stored[-1] ^ 1]))
    refused = walg("wal-push", str(copy), env=full_checked, check=False)
    assert refused.returncode != 0 and segment in refused.stderr

    restored = fetch_and_recover(pg_cluster_factory, walg, full, name, script)
    assert restored.psql(ACCOUNTS) == expected
