"""wal-push as PostgreSQL 15's archive_command, and wal-push killed at random moments.

The archiver runs archive_command as the postgres OS user with the server's environment,
so settings reach wal-g through a small wrapper script in a directory postgres can read.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from servers.postgres import (  # noqa: F401 (pg_cluster_factory is a fixture)
    ClusterFactory,
    PgCluster,
    pg_cluster_factory,
)

from walg.compression import method_for_extension, open_decompressed
from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader
from walg.storage.file import TEMP_MARK

WALG = str(Path(sys.executable).parent / "wal-g")
MARKERS = Path("walg_data") / "walg_archive_status"
SEGMENT_SIZE = 4 << 20  # initdb --wal-segsize=4: wal-push checks size and first page header


def wrapper(cluster: PgCluster, env: dict[str, str]) -> str:
    """A 0755 script, readable by postgres, that runs wal-g with ``env``."""
    script = cluster.make_dir("bin") / "wal-g"
    exports = "".join(f"export {key}='{value}'\n" for key, value in env.items())
    script.write_text(f'#!/bin/sh\n{exports}exec {WALG} "$@"\n')
    script.chmod(0o755)
    return str(script)


def plain(store: Path, key: str) -> bytes:
    """The decompressed content of object ``key`` (fails if it is damaged or cut short)."""
    method = method_for_extension(key.rsplit(".", 1)[-1]) or "none"
    with (
        open(store / key, "rb") as raw,
        open_decompressed(raw, method) as out,
    ):
        return out.read()


def wait_archived(cluster: PgCluster, timeout: float = 120.0) -> None:
    """Wait until PostgreSQL has no WAL file left to archive."""
    status = cluster.data_dir / "pg_wal" / "archive_status"
    deadline = time.monotonic() + timeout
    while any(name.endswith(".ready") for name in os.listdir(status)):
        failed = cluster.psql("SELECT failed_count FROM pg_stat_archiver")
        assert failed == "0", cluster.log_tail()
        assert time.monotonic() < deadline, f"archiving stalled:\n{cluster.log_tail()}"
        time.sleep(0.2)


def check_archive(cluster: PgCluster, store: Path) -> list[str]:
    """Every file PostgreSQL archived is stored, with the content still in pg_wal; returns
    the archived names."""
    pg_wal = cluster.data_dir / "pg_wal"
    done = sorted(n[: -len(".done")] for n in os.listdir(pg_wal / "archive_status"))
    stored = {p.name.rsplit(".", 1)[0] for p in (store / "wal_005").iterdir()}
    assert set(done) <= stored
    for name in done:
        if (pg_wal / name).exists():  # not recycled yet: its content is what was archived
            assert plain(store, f"wal_005/{name}.lz4") == (pg_wal / name).read_bytes(), name
    return done


def test_archive_command_stores_every_segment(
    pg_cluster_factory: ClusterFactory,  # noqa: F811 - the fixture imported above
) -> None:
    """With archive_command = wal-g wal-push, every archived segment (a backlog uploaded
    ahead in the background, then live pgbench WAL and a history-free switch) is stored,
    pg_stat_archiver counts no failure, and no marker is left over."""
    cluster = pg_cluster_factory(archive_command="")  # archive_mode on, nothing archived yet
    store = cluster.make_dir("storage")
    env = {"WALG_FILE_PREFIX": str(store), "WALG_UPLOAD_CONCURRENCY": "4"}
    command = f"{wrapper(cluster, {**env, 'WALG_LOG_LEVEL': 'DEBUG'})} wal-push %p"
    cluster.pgbench_init(scale=4)
    for i in range(3):
        cluster.psql(f"CREATE TABLE t{i} AS SELECT 1; SELECT pg_switch_wal()")
    backlog = len(os.listdir(cluster.data_dir / "pg_wal" / "archive_status"))
    assert backlog >= 5
    cluster.psql(f"ALTER SYSTEM SET archive_command = '{command}'")
    cluster.psql("SELECT pg_reload_conf()")
    wait_archived(cluster)
    # The first call started the cluster's background worker, which uploaded the backlog
    # ahead and served the calls that followed (its log is in pg_wal/walg_data).
    worker_log = cluster.data_dir / "pg_wal" / "walg_data" / "walg_background.log"
    assert "wal-push: uploaded ahead" in worker_log.read_text()
    cluster.pgbench_run(seconds=3, clients=2).wait()
    cluster.psql("CREATE TABLE tick AS SELECT 1; SELECT pg_switch_wal()")
    wait_archived(cluster)
    archived = check_archive(cluster, store)
    assert len(archived) >= backlog
    stats = cluster.psql("SELECT archived_count, failed_count FROM pg_stat_archiver")
    assert stats.split("|")[1] == "0" and int(stats.split("|")[0]) >= len(archived)
    assert not list((cluster.data_dir / "pg_wal" / MARKERS).iterdir())


def kill_loop_state(pg_wal: Path, store: Path, content: dict[str, bytes]) -> None:
    """Check the invariants after a kill: every marker's object is stored whole, and every
    stored object is whole (nothing partial under a final name)."""
    for marker in (pg_wal / MARKERS).glob("*.done") if (pg_wal / MARKERS).is_dir() else []:
        name = marker.name[: -len(".done")]
        assert plain(store, f"wal_005/{name}.lz4") == content[name], f"marker without {name}"
    for obj in (store / "wal_005").glob("*") if (store / "wal_005").is_dir() else []:
        if TEMP_MARK not in obj.name:
            assert plain(store, f"wal_005/{obj.name}") == content[obj.name.split(".")[0]]


def test_killed_wal_push_never_marks_an_unstored_segment(tmp_path: Path) -> None:
    """wal-push SIGKILLed at random moments while it and its background uploads run
    (slowed by WALG_NETWORK_RATE_LIMIT), retried like PostgreSQL's archiver does, never
    leaves a marker for a segment that is not stored whole, nor a partial object."""
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    store = tmp_path / "store"
    rng = random.Random(int(os.environ.get("WALG_TEST_SEED", "20240601")))
    content = {}
    for i in range(1, 9):
        name = f"0000000100000000000000{i:02X}"
        header = LongPageHeader(0xD110, 2, 1, i * SEGMENT_SIZE, 0, 7, SEGMENT_SIZE, 8192)
        content[name] = header.pack() + rng.randbytes(SEGMENT_SIZE - LONG_HEADER_SIZE)
        (pg_wal / name).write_bytes(content[name])
        (pg_wal / "archive_status" / f"{name}.ready").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "WALE_"))}
    env.update(
        WALG_FILE_PREFIX=str(store),
        # the uploads ahead in threads of the call itself (the background worker, whose
        # calls return too fast to be killed mid-upload, has kill tests of its own in
        # test_wal_background.py)
        WALG_WAL_BACKGROUND="false",
        WALG_UPLOAD_CONCURRENCY="3",
        WALG_NETWORK_RATE_LIMIT=str(8 << 20),  # ~1.5 s for one call and its two companions
    )
    kills = 0
    for attempt in range(60):
        ready = sorted(
            p.name[: -len(".ready")] for p in (pg_wal / "archive_status").glob("*.ready")
        )
        if not ready:
            break
        process = subprocess.Popen([WALG, "wal-push", f"pg_wal/{ready[0]}"], cwd=tmp_path, env=env)
        try:
            # the first dozen calls are killed at a random moment, later ones may finish
            code = process.wait(timeout=rng.uniform(0.02, 1.3) if attempt < 12 else 60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        else:
            assert code == 0
            (pg_wal / "archive_status" / f"{ready[0]}.ready").rename(
                pg_wal / "archive_status" / f"{ready[0]}.done"
            )
        kill_loop_state(pg_wal, store, content)
    assert kills >= 3
    assert not list((pg_wal / "archive_status").glob("*.ready")), "archiving did not finish"
    for name in content:
        assert plain(store, f"wal_005/{name}.lz4") == content[name]
