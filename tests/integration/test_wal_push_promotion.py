"""wal-push's content checks on the files a real promotion writes (PostgreSQL 15): the
new .history file, and the new timeline's first segment, whose first page still carries
the old timeline's ID. (No .partial here: the old timeline's last segment came from the
archive, so PostgreSQL has none to rename; tests/unit/test_wal_push.py covers .partial.)"""

from __future__ import annotations

import time

from servers.postgres import ClusterFactory, PgCluster, pg_cluster_factory  # noqa: F401
from test_archive_command import plain, wrapper  # type: ignore[import-not-found]
from test_wal_fetch_replay import (  # type: ignore[import-not-found]
    archived,
    archiving_source,
    base_backup,
    wait_archived,
)

from walg.postgres.wal_format import LongPageHeader


def test_promotion_files_pass_the_checks(
    pg_cluster_factory: ClusterFactory,  # noqa: F811 - the fixture imported above
) -> None:
    """A restored base backup promoted at an LSN in the middle of a segment archives, through
    wal-push, 00000002.history and timeline 2's first segment (first page on timeline 1)
    without a failure."""
    source, store, env = archiving_source(pg_cluster_factory)
    source.psql("CREATE TABLE t (id int)")
    restored = PgCluster.make_base()
    base_backup(source, restored / "data")
    source.psql("INSERT INTO t SELECT generate_series(1, 1000)")
    target = source.psql("SELECT pg_current_wal_insert_lsn()")
    source.psql("INSERT INTO t SELECT generate_series(1001, 2000)")
    wait_archived(source, source.psql("SELECT pg_walfile_name(pg_switch_wal())"))
    source.stop()

    (restored / "data" / "recovery.signal").touch()
    cluster = pg_cluster_factory(adopt=restored / "data", base=restored, start=False)
    script = wrapper(cluster, env)
    cluster.archive_command = f"{script} wal-push %p"
    cluster.restore_command = f"{script} wal-fetch %f %p"
    cluster.settings.update(
        recovery_target_lsn=f"'{target}'", recovery_target_action="'promote'"
    )
    cluster.configure()
    cluster.start()
    deadline = time.monotonic() + 120
    while cluster.psql("SELECT pg_is_in_recovery()") != "f":
        assert time.monotonic() < deadline, cluster.log_tail()
        time.sleep(0.2)
    assert cluster.psql("SELECT count(*) FROM t") == "1000"
    first = cluster.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    wait_archived(cluster, cluster.psql("SELECT pg_walfile_name(pg_switch_wal())"))

    names = archived(store)
    assert "00000002.history" in names
    assert first.startswith("00000002") and first in names
    header = LongPageHeader.parse(plain(store, f"wal_005/{first}.lz4")[:64])
    assert header.tli == 1  # the copied part of the old timeline's segment
    assert cluster.psql("SELECT failed_count FROM pg_stat_archiver") == "0", cluster.log_tail()
