"""A damaged WAL object in the middle of archive recovery stops PostgreSQL 15's recovery
(wal-fetch exit 200) instead of ending it early; once the object is repaired, a restart
replays everything. Archived by the real wal-push, whose checks pass on real segments,
backup history and timeline history files."""

from __future__ import annotations

import contextlib
import re
import time

from servers.postgres import ClusterFactory, PgCluster, pg_cluster_factory  # noqa: F401
from test_archive_command import wrapper  # type: ignore[import-not-found]
from test_wal_fetch_replay import (  # type: ignore[import-not-found]
    archived,
    archiving_source,
    base_backup,
    make_history,
    wait_promoted,
    write_wrapper,
)

from walg.errors import EX_ABORT_RECOVERY
from walg.postgres.wal import is_backup_history_name, is_segment_name


def wait_for(condition: object, what: str, cluster: PgCluster, timeout: float = 60) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}\n{cluster.log_tail()}"
        time.sleep(0.2)


def test_damaged_object_stops_recovery_until_repaired(
    pg_cluster_factory: ClusterFactory,  # noqa: F811 - the fixture imported above
) -> None:
    """With a WAL object cut short in the middle of the range a restored base backup needs,
    the server does not promote: wal-fetch exits 200, PostgreSQL aborts recovery with
    walg's ERROR in its log, and no new timeline appears. With the object back, a restart
    replays to the end of the archive (ending on exit 74) with all rows, and the promoted
    server archives its timeline history through wal-push."""
    source, store, env = archiving_source(pg_cluster_factory)
    source.psql("CREATE TABLE t (id int, v text)")
    restored = PgCluster.make_base()
    base_backup(source, restored / "data")
    expected = make_history(source, rounds=6)
    source.stop()

    names = archived(store)
    backup_start = next(n for n in names if is_backup_history_name(n))[:24]
    later = [n for n in names if is_segment_name(n) and n > backup_start]
    damaged = later[len(later) // 2]  # replay needs it, and segments after it
    obj = store / "wal_005" / f"{damaged}.lz4"
    original = obj.read_bytes()
    obj.write_bytes(original[: len(original) // 2])

    calls = restored / "calls"
    script = restored / "wal-g-restore.sh"
    (restored / "data" / "recovery.signal").touch()
    cluster = pg_cluster_factory(
        adopt=restored / "data",
        base=restored,
        start=False,
        archive_command="",
        restore_command=f"{script} wal-fetch %f %p",
        settings={"recovery_target_timeline": "'latest'"},
    )
    cluster.make_dir("calls")
    write_wrapper(script, store, calls)
    cluster.archive_command = f"{wrapper(cluster, env)} wal-push %p"
    cluster.configure()
    with contextlib.suppress(RuntimeError):  # pg_ctl may see recovery start, or the exit
        cluster.start()
    pid_file = restored / "data" / "postmaster.pid"
    wait_for(lambda: not pid_file.exists(), "the server did not stop", cluster, timeout=120)
    cluster.running = False

    log = cluster.log_file.read_text(errors="replace")
    assert re.search(
        f'could not restore file "{damaged}" from archive: child process exited with exit '
        f"code {EX_ABORT_RECOVERY}",
        log,
    ), log
    assert re.search(f"ERROR: .*{damaged}", log), log
    assert "archive recovery complete" not in log and "selected new timeline" not in log
    assert not (restored / "data" / "pg_wal" / "00000002.history").exists()
    results = [line.split()[:2] for line in (calls / "calls.log").read_text().splitlines()]
    assert [str(EX_ABORT_RECOVERY), damaged] in results
    assert not any(rc == "74" and is_segment_name(n) for rc, n in results)

    obj.write_bytes(original)
    cluster.start()
    wait_promoted(cluster)
    assert int(cluster.psql("SELECT count(*) FROM t")) == expected
    results = [line.split()[:2] for line in (calls / "calls.log").read_text().splitlines()]
    last = max(n for n in names if is_segment_name(n))
    assert ["0", last] in results  # replayed to the end of the archive...
    assert any(rc == "74" and is_segment_name(n) and n > last for rc, n in results)  # ...then 74

    cluster.psql("CREATE TABLE after_promotion AS SELECT 1; SELECT pg_switch_wal()")
    wait_for(lambda: "00000002.history" in archived(store), "no history archived", cluster)
    wait_for(
        lambda: any(n.startswith("00000002") and is_segment_name(n) for n in archived(store)),
        "no segment of timeline 2 archived",
        cluster,
    )
    assert cluster.psql("SELECT failed_count FROM pg_stat_archiver") == "0", cluster.log_tail()
