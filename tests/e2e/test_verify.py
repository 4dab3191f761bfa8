"""backup-push --verify on a real cluster with data checksums: a damaged page is reported
and recorded, the backup still completes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servers.postgres import PgCluster


def corrupt_first_page(cluster: PgCluster, table: str) -> str:
    """Flip a byte in the middle of the table's first page on disk; return its file name."""
    cluster.psql("CHECKPOINT")
    relative = cluster.psql(f"SELECT pg_relation_filepath('{table}')")
    path = cluster.data_dir / relative
    with path.open("r+b") as f:
        f.seek(4000)
        byte = f.read(1)
        f.seek(4000)
        f.write(bytes([byte[0] ^ 0xFF]))
    return relative


def files_metadata(storage: Path, name: str) -> dict[str, Any]:
    doc = json.loads((storage / "basebackups_005" / name / "files_metadata.json").read_text())
    files: dict[str, Any] = doc["Files"]
    return files


def test_verify_reports_and_records_a_corrupt_page(pg_cluster_factory: Any, walg: Any) -> None:
    cluster = pg_cluster_factory(data_checksums=True)
    cluster.psql(
        "CREATE TABLE good AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g"
    )
    cluster.psql(
        "CREATE TABLE bad AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g"
    )
    damaged = corrupt_first_page(cluster, "bad")
    storage = cluster.make_dir("storage")
    env = {**cluster.env, "WALG_FILE_PREFIX": str(storage)}
    done = walg("backup-push", str(cluster.data_dir), "--verify", env=env)
    assert "checksum" in done.stderr
    name = done.stdout.strip().splitlines()[-1]
    files = files_metadata(storage, name)
    assert files["/" + damaged]["CorruptBlocks"] == {
        "CorruptBlocksCount": 1,
        "SomeCorruptBlocks": [0],
    }
    flagged = [n for n, f in files.items() if "CorruptBlocks" in f]
    assert flagged == ["/" + damaged]


def test_verify_without_data_checksums_warns_and_backs_up(
    pg_cluster_factory: Any, walg: Any
) -> None:
    cluster = pg_cluster_factory()
    storage = cluster.make_dir("storage")
    env = {**cluster.env, "WALG_FILE_PREFIX": str(storage), "WALG_VERIFY_PAGE_CHECKSUMS": "true"}
    done = walg("backup-push", str(cluster.data_dir), env=env)
    assert "checksums are off" in done.stderr
    name = done.stdout.strip().splitlines()[-1]
    assert not any("CorruptBlocks" in f for f in files_metadata(storage, name).values())
