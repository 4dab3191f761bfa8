"""walg.postgres against a real PostgreSQL: connection, backup start/stop, pg_control, pages.

One cluster (with data checksums and a tablespace) serves the module; the standby test makes
its own. Runs in a few seconds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.postgres import (  # noqa: F401 (pg_cluster and pg_cluster_factory are fixtures)
    PgCluster,
    pg_cluster,
    pg_cluster_factory,
    postgres_unavailable,
)

from walg.config.settings import PostgresSettings, Secret
from walg.errors import PostgresError
from walg.postgres import control, pages
from walg.postgres.connection import PgConnection, connect
from walg.postgres.wal import DEFAULT_SEGMENT_SIZE, format_lsn, parse_lsn, wal_file_name

pytestmark = pytest.mark.skipif(
    postgres_unavailable() is not None, reason=str(postgres_unavailable())
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A started cluster with data checksums, a table, and a tablespace."""
    made = PgCluster.create(data_checksums=True)
    try:
        made.start()
        space = made.make_dir("space1")
        made.psql(f"CREATE TABLESPACE space1 LOCATION '{space}'")
        made.psql(
            "CREATE TABLE t (id int, payload text);"
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;"
            "CHECKPOINT"
        )
        yield made
    finally:
        made.cleanup()


def settings_for(cluster: PgCluster, **changes: object) -> PostgresSettings:
    values: dict[str, object] = {
        "host": str(cluster.socket_dir),
        "port": cluster.port,
        "user": "postgres",
        "database": "postgres",
    }
    values.update(changes)
    return PostgresSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def conn(cluster: PgCluster) -> Iterator[PgConnection]:
    with connect(settings_for(cluster)) as opened:
        yield opened


def controldata(cluster: PgCluster) -> dict[str, str]:
    """pg_controldata's output as a dict."""
    done = subprocess.run(
        [str(cluster.bin / "pg_controldata"), str(cluster.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    pairs = (line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_facts_through_the_socket_directory(cluster: PgCluster, conn: PgConnection) -> None:
    """A socket-directory PGHOST connects; data directory, role, timeline and sizes are right."""
    assert conn.server_version_num >= 150000
    assert Path(conn.data_directory()).resolve() == cluster.data_dir.resolve()
    assert conn.is_in_recovery() is False
    assert conn.current_timeline() == 1
    assert conn.wal_segment_size() == DEFAULT_SEGMENT_SIZE
    (space,) = conn.tablespaces()
    assert space.name == "space1"
    assert space.location == str(cluster.base / "space1")
    assert (cluster.data_dir / "pg_tblspc" / str(space.oid)).is_symlink()


def test_system_identifier_matches_pg_control(cluster: PgCluster, conn: PgConnection) -> None:
    """The server, our pg_control parser and pg_controldata agree on the cluster's facts."""
    conn.query("CHECKPOINT")
    parsed = control.read_control(cluster.data_dir)
    tool = controldata(cluster)
    assert conn.system_identifier() == parsed.system_identifier
    assert str(parsed.system_identifier) == tool["Database system identifier"]
    assert str(parsed.pg_control_version) == tool["pg_control version number"]
    assert str(parsed.catalog_version) == tool["Catalog version number"]
    assert parse_lsn(tool["Latest checkpoint location"]) == parsed.checkpoint_lsn
    assert parse_lsn(tool["Latest checkpoint's REDO location"]) == parsed.redo_lsn
    assert str(parsed.timeline) == tool["Latest checkpoint's TimeLineID"]
    assert str(parsed.block_size) == tool["Database block size"]
    assert str(parsed.wal_segment_size) == tool["Bytes per WAL segment"]
    assert str(parsed.data_checksum_version) == tool["Data page checksum version"]
    assert parsed.db_state is control.DbState.IN_PRODUCTION


def test_backup_start_and_stop(cluster: PgCluster, conn: PgConnection) -> None:
    """A non-exclusive backup returns sane LSNs, the label and the tablespace map."""
    start = conn.start_backup("walg test", fast=True)
    assert start.timeline == 1
    assert not start.in_recovery
    sql = (
        "SELECT pg_walfile_name(lsn), (pg_walfile_name_offset(lsn)).file_name "
        f"FROM (SELECT '{format_lsn(start.lsn)}'::pg_lsn AS lsn) s"
    )
    assert cluster.psql(sql).split("|") == [start.wal_file_name, start.wal_file_name]
    cluster.psql("INSERT INTO t VALUES (0, 'during the backup')")
    stop = conn.stop_backup()
    assert stop.lsn > start.lsn
    assert "START WAL LOCATION" in stop.label_file
    assert stop.label.start_lsn == start.lsn
    assert stop.label.start_wal_file == start.wal_file_name
    assert stop.label.start_timeline == 1
    assert stop.label.label == "walg test"
    assert stop.timeline == 1
    oid = conn.tablespaces()[0].oid
    assert stop.tablespace_map.strip() == f"{oid} {cluster.base / 'space1'}"


def test_stop_can_wait_for_archiving(cluster: PgCluster, conn: PgConnection) -> None:
    """With wait_for_archive the stop returns once the last needed segment is archived."""
    conn.start_backup("wait", fast=True)
    stop = conn.stop_backup(wait_for_archive=True)
    (archived,) = conn.query("SELECT last_archived_wal FROM pg_stat_archiver")[0]
    assert archived is not None
    assert archived[:24] >= wal_file_name(1, stop.lsn - 1)


def test_stop_without_start_is_a_clear_error(conn: PgConnection) -> None:
    """Stopping a backup this session did not start raises PostgresError with a hint."""
    with pytest.raises(PostgresError) as caught:
        conn.stop_backup()
    assert caught.value.msg.startswith("stopping the backup failed: ")
    assert "in progress" in caught.value.msg
    assert caught.value.hint


def test_wrong_port_is_one_clear_line(cluster: PgCluster) -> None:
    """A wrong port gives a PostgresError with a hint, no chained exception, no password."""
    secret = "s3cret-pa55word"
    settings = settings_for(cluster, port=1, password=Secret(secret))
    with pytest.raises(PostgresError) as caught:
        connect(settings, connect_timeout=2)
    error = caught.value
    assert error.msg.startswith(f"cannot connect to PostgreSQL at {cluster.socket_dir} port 1")
    assert "\n" not in error.msg
    assert "PGHOST" in error.hint and "PGPORT" in error.hint
    assert secret not in error.msg + error.hint + repr(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_unprivileged_role(cluster: PgCluster) -> None:
    """Without PGDATABASE a role falls back to 'postgres'; data_directory needs privileges."""
    cluster.psql("DROP ROLE IF EXISTS plain; CREATE ROLE plain LOGIN")
    with connect(settings_for(cluster, user="plain", database=None)) as plain:
        assert plain.query("SELECT current_database()") == [("postgres",)]
        with pytest.raises(PostgresError) as caught:
            plain.data_directory()
    assert "pg_read_all_settings" in caught.value.msg + caught.value.hint
    with pytest.raises(PostgresError, match="does not exist"):
        connect(settings_for(cluster, user="plain", database="nope"))


def relation_pages(cluster: PgCluster, table: str) -> bytes:
    cluster.psql("CHECKPOINT")
    return (cluster.data_dir / cluster.psql(f"SELECT pg_relation_filepath('{table}')")).read_bytes()


def test_page_checksums_of_a_relation_verify(cluster: PgCluster) -> None:
    """Every page of a real heap file carries the checksum pg_checksum_page computes."""
    data = relation_pages(cluster, "t")
    count = len(data) // pages.BLOCK_SIZE
    assert count > 100
    blocks = [data[i * pages.BLOCK_SIZE : (i + 1) * pages.BLOCK_SIZE] for i in range(count)]
    stored = [pages.parse_page_header(block).checksum for block in blocks]
    assert pages.page_checksums(data, 0) == stored
    assert all(pages.verify_page(block, i) for i, block in enumerate(blocks))
    assert all(pages.is_valid_header(pages.parse_page_header(block)) for block in blocks)
    corrupt = bytearray(blocks[3])
    corrupt[5000] ^= 0x40
    assert not pages.verify_page(bytes(corrupt), 3)
    assert not pages.verify_page(blocks[3], 4)  # the block number is part of the checksum


def test_standby_backup_and_promotion(cluster: PgCluster) -> None:
    """On a standby backups work; a promotion during one makes stop fail; then timeline 2."""
    base = PgCluster.make_base()
    standby_dir = base / "data"
    try:
        space = cluster.base / "space1"
        standby_space = base / "space1"
        subprocess.run(
            [str(cluster.bin / "pg_basebackup"), "-D", str(standby_dir), "-R", "-X", "stream",
             "-c", "fast", "-h", str(cluster.socket_dir), "-p", str(cluster.port),
             "-U", "postgres", "--no-sync", f"--tablespace-mapping={space}={standby_space}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        standby = PgCluster.adopt(standby_dir, base=base, archive_command=None)
        assert standby_space.stat().st_uid == standby_dir.stat().st_uid
        standby.start()
        with connect(settings_for(standby)) as conn:
            assert conn.is_in_recovery()
            assert conn.current_timeline() == 1
            start = conn.start_backup("from standby")
            assert start.in_recovery and start.timeline == 1
            stop = conn.stop_backup()
            assert stop.label.backup_from == "standby"
            assert stop.label.start_lsn == start.lsn
            assert stop.lsn >= start.lsn
            conn.start_backup("interrupted by a promotion")
            standby.promote()
            with pytest.raises(PostgresError, match=r"stopping the backup failed|timeline"):
                conn.stop_backup()
            assert not conn.is_in_recovery()
            assert conn.current_timeline() == 2
    finally:
        PgCluster(base, data_dir=standby_dir).cleanup()


def test_cluster_helper_lifecycle(pg_cluster: PgCluster) -> None:  # noqa: F811 (fixture)
    """The test helper's cluster runs pgbench in the background, stops and starts again."""
    pg_cluster.pgbench_init(scale=1)
    bench = pg_cluster.pgbench_run(seconds=1, clients=2)
    assert "number of transactions actually processed" in bench.wait()
    pg_cluster.stop()
    assert not (pg_cluster.data_dir / "postmaster.pid").exists()
    pg_cluster.start()
    assert pg_cluster.psql("SELECT count(*) FROM pgbench_accounts") == "100000"
    assert pg_cluster.data_dir.stat().st_mode & 0o777 == 0o700
