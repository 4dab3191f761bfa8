"""wal-verify and wal-show on real PostgreSQL archiving with `wal-g wal-push`: a healthy
archive, a gapped one, and two timelines after a restored cluster was promoted and archived
into the same storage."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conftest_helpers import WALG, archive_now, push, wait_promoted  # type: ignore[import-not-found]
from servers.postgres import PgCluster

from walg.postgres.wal import parse_lsn, segment_name


def wrapper(cluster: PgCluster, env: Mapping[str, str]) -> str:
    """A script the server runs (as its own user) that calls wal-g with ``env``."""
    script = cluster.make_dir("bin") / "walg.sh"
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    script.write_text(f"#!/bin/sh\n{exports}exec {WALG} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def archiving(factory: Any, env: dict[str, str] | None = None) -> tuple[PgCluster, dict[str, str]]:
    """A started cluster whose archive_command is `wal-g wal-push %p`, and walg's env."""
    cluster = factory()
    env = env or {"WALG_FILE_PREFIX": str(cluster.make_dir("storage")),
                  "WALG_WAL_BACKGROUND": "false"}
    cluster.archive_command = f"{wrapper(cluster, env)} wal-push %p"
    cluster.configure()
    cluster.restart()
    return cluster, env


def verify(walg: Any, cluster: PgCluster, env: Mapping[str, str], *args: str) -> Any:
    done = walg("wal-verify", "integrity", "timeline", "--json", *args,
                env={**cluster.env, **env})
    return json.loads(done.stdout)


def test_healthy_archive(pg_cluster_factory: Any, walg: Any) -> None:
    """A backup and the WAL after it, all archived: integrity OK (one FOUND range from the
    backup's start segment), timeline OK; the plain output is WAL-G's; exit 0."""
    cluster, env = archiving(pg_cluster_factory)
    name = push(walg, cluster, env)
    archived = [archive_now(cluster) for _ in range(3)]
    result = verify(walg, cluster, env)
    assert set(result) == {"integrity", "timeline"}
    assert result["timeline"] == {"status": "OK", "details": {
        "current_timeline_id": 1, "highest_storage_timeline_id": 1}}
    integrity = result["integrity"]
    assert integrity["status"] == "OK", integrity
    (found,) = integrity["details"]
    assert set(found) == {"timeline_id", "start_segment", "end_segment", "segments_count",
                          "status"}
    assert found["start_segment"] == name.removeprefix("base_")
    # the scan ends before the segment holding LSN - 1: right after a switch, the last
    # archived one itself
    assert found["end_segment"] >= archived[-2] and found["status"] == "FOUND"
    plain = walg("wal-verify", "integrity", "timeline", env={**cluster.env, **env}).stdout
    assert "[wal-verify] integrity check status: OK\n" in plain
    assert "| TLI | START " in plain and "Current cluster timeline: 1\n" in plain


def test_gapped_archive(pg_cluster_factory: Any, walg: Any) -> None:
    """A segment deleted from the middle of wal_005: FAILURE with a one-segment
    MISSING_LOST range; exit 0 as WAL-G, 3 with --exit-code; wal-show lists the gap."""
    cluster, env = archiving(pg_cluster_factory)
    name = push(walg, cluster, env)
    segments = [archive_now(cluster) for _ in range(6)]
    gap = segments[1]
    storage = cluster.base / "storage" / "wal_005"
    (victim,) = storage.glob(f"{gap}.*")
    victim.unlink()
    env = {**env, "WALG_UPLOAD_CONCURRENCY": "2"}
    integrity = verify(walg, cluster, env)["integrity"]
    assert integrity["status"] == "FAILURE"
    lost = [r for r in integrity["details"] if r["status"] == "MISSING_LOST"]
    assert lost == [{"timeline_id": 1, "start_segment": gap, "end_segment": gap,
                     "segments_count": 1, "status": "MISSING_LOST"}]
    assert integrity["details"][0]["start_segment"] == name.removeprefix("base_")
    flagged = walg("wal-verify", "integrity", "--exit-code", env={**cluster.env, **env},
                   check=False)
    assert flagged.returncode == 3, flagged.stderr
    assert "integrity check status: FAILURE" in flagged.stdout
    shown = json.loads(walg("wal-show", "--detailed-json", env=env).stdout)
    assert shown[0]["status"] == "LOST_SEGMENTS" and shown[0]["missing_segments"] == [gap]


def test_two_timelines_after_promotion(pg_cluster_factory: Any, walg: Any) -> None:
    """A restored cluster promoted to timeline 2 archives into the same storage: wal-show
    lists both timelines with the parent and switch point and each one's backup; wal-verify
    on the new primary is OK across the switch, and the old primary (still on timeline 1)
    fails the timeline check, as WAL-G's split-brain check."""
    source, env = archiving(pg_cluster_factory)
    first = push(walg, source, env)
    archive_now(source)
    archive_now(source)
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), first, env=env)
    (base / "data" / "recovery.signal").touch()
    script = wrapper(source, env)
    restored = pg_cluster_factory(adopt=base / "data", base=base,
                                  archive_command=f"{script} wal-push %p",
                                  restore_command=f"{script} wal-fetch %f %p")
    wait_promoted(restored)
    assert restored.psql("SELECT timeline_id FROM pg_control_checkpoint()") in ("1", "2")
    archive_now(restored)
    second = push(walg, restored, env)
    archive_now(restored)
    history = (base / "data" / "pg_wal" / "00000002.history").read_text()
    switch = parse_lsn(history.split()[1])

    shown = json.loads(walg("wal-show", "--detailed-json", env=env).stdout)
    assert [t["id"] for t in shown] == [1, 2]
    one, two = shown
    assert (one["parent_id"], one["switch_point_lsn"]) == (0, 0)
    assert (two["parent_id"], two["switch_point_lsn"]) == (1, switch)
    assert two["start_segment"] == segment_name(2, switch // (16 << 20))
    assert [b["backup_name"] for b in one["backups"]] == [first]
    assert [b["backup_name"] for b in two["backups"]] == [second]
    plain = walg("wal-show", env=env).stdout
    assert "| TLI | PARENT TLI | SWITCHPOINT LSN |" in plain

    result = verify(walg, restored, env)
    assert result["timeline"]["status"] == "OK"
    assert result["integrity"]["status"] == "OK", result["integrity"]
    assert [r["timeline_id"] for r in result["integrity"]["details"]] == [1, 2]
    assert result["integrity"]["details"][0]["start_segment"] == first.removeprefix("base_")
    old = verify(walg, source, env)["timeline"]
    assert old == {"status": "FAILURE", "details": {
        "current_timeline_id": 1, "highest_storage_timeline_id": 2}}
