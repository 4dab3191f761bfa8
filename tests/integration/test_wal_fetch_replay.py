"""wal-fetch as PostgreSQL 15's restore_command: a restored base backup replays archived WAL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers.postgres import ClusterFactory, PgCluster, pg_cluster_factory  # noqa: F401

from walg.compression import EXTENSIONS, compress_stream
from walg.postgres.wal import is_segment_name
from walg.storage.file import FileStorage

WALG = str(Path(sys.executable).parent / "wal-g")
METHODS = ("lz4", "brotli", "lzma", "none")  # archived segments rotate through all of them


def push_archive(archive: Path, storage: Path) -> list[str]:
    """Store every file of a ``cp`` archive in walg's layout, compressed with rotating
    methods (as if WALG_COMPRESSION_METHOD had changed over time); return the names."""
    store = FileStorage(str(storage))
    names = sorted(os.listdir(archive))
    for i, name in enumerate(names):
        method = METHODS[i % len(METHODS)]
        ext = EXTENSIONS[method]
        with open(archive / name, "rb") as src:
            data = b"".join(compress_stream(src, method))
        store.put_object(f"wal_005/{name}.{ext}" if ext else f"wal_005/{name}", data)
    for root, dirs, files in os.walk(storage):  # the postgres user reads the storage
        for entry in dirs:
            os.chmod(os.path.join(root, entry), 0o755)
        for entry in files:
            os.chmod(os.path.join(root, entry), 0o644)
    os.chmod(storage, 0o755)
    return names


def write_wrapper(path: Path, storage: Path, calls: Path, daemon_socket: str = "") -> None:
    """A restore_command wrapper: runs ``wal-g wal-fetch`` with the storage configured (and
    a daemon to hand it to) and logs each call's exit code, name, and whether the prefetch
    cache had the file."""
    path.write_text(
        "#!/bin/sh\n"
        f"export WALG_FILE_PREFIX='{storage}' WALG_DOWNLOAD_CONCURRENCY=3\n"
        f"export WALG_DAEMON_SOCKET='{daemon_socket}'\n"
        'cache=no; [ -e "$(dirname "$3")/.wal-g/prefetch/$2" ] && cache=yes\n'
        f'{WALG} "$@"\n'
        "rc=$?\n"
        f'echo "$rc $2 $cache" >> {calls}/calls.log\n'
        "exit $rc\n"
    )
    path.chmod(0o755)


def wait_archived(cluster: PgCluster, segment: str, timeout: float = 60) -> None:
    """Wait until the archiver reports ``segment`` (or a later one) archived."""
    deadline = time.monotonic() + timeout
    while cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        assert time.monotonic() < deadline, f"{segment} not archived\n{cluster.log_tail()}"
        time.sleep(0.1)


def archiving_source(
    factory: ClusterFactory,
) -> tuple[PgCluster, Path, dict[str, str]]:
    """A started cluster archiving through ``wal-g wal-push`` into its own file storage:
    the cluster, the storage folder, and the settings that name it."""
    from test_archive_command import wrapper  # type: ignore[import-not-found]

    source = factory(base=PgCluster.make_base(), archive_command="", start=False)
    store = source.make_dir("storage")
    env = {"WALG_FILE_PREFIX": str(store)}
    source.archive_command = f"{wrapper(source, env)} wal-push %p"
    source.configure()
    source.start()
    return source, store, env


def archived(store: Path) -> list[str]:
    """The WAL file names in the archive (object names without the .lz4)."""
    return sorted(name.removesuffix(".lz4") for name in os.listdir(store / "wal_005"))


def make_history(cluster: PgCluster, rounds: int) -> int:
    """Write rows across ``rounds`` WAL segments (switching after each); return the count."""
    for i in range(rounds):
        cluster.psql(f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {i + 1}000) g")
        segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_archived(cluster, segment)
    return int(cluster.psql("SELECT count(*) FROM t"))


def base_backup(cluster: PgCluster, target: Path) -> None:
    """``pg_basebackup -X none``: the backup's WAL must come from the archive."""
    command = [str(cluster.bin / "pg_basebackup"), "-D", str(target), "-X", "none", "-c", "fast"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(command, env={**env, **cluster.env}, check=True, timeout=120)


def wait_promoted(cluster: PgCluster, timeout: float = 120) -> None:
    """Wait until the restored server has finished recovery and accepts writes."""
    deadline = time.monotonic() + timeout
    while cluster.psql("SELECT pg_is_in_recovery()") != "f":
        assert time.monotonic() < deadline, f"recovery did not end\n{cluster.log_tail()}"
        time.sleep(0.1)


def start_daemon(
    cluster: PgCluster, storage: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """``wal-g daemon`` as PostgreSQL's user (it writes into pg_wal), on a socket of its
    own, logging each request it serves to ``log``."""
    socket_path = str(cluster.make_dir("daemon") / "walg.sock")
    command = ["env", f"WALG_FILE_PREFIX={storage}", "WALG_DOWNLOAD_CONCURRENCY=3"]
    command += ["WALG_LOG_LEVEL=DEBUG", WALG, "daemon", socket_path]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    with log.open("wb") as out:
        daemon = subprocess.Popen(command, stderr=out)
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path):
        assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.05)
    return daemon, socket_path


@pytest.mark.parametrize("via_daemon", [False, True], ids=["direct", "daemon"])
def test_restored_cluster_replays_archive_through_wal_fetch(
    pg_cluster_factory: ClusterFactory,  # noqa: F811 - the fixture imported above
    via_daemon: bool,
) -> None:
    """A base backup started with restore_command = wal-g wal-fetch replays every archived
    segment (several from the prefetch cache), ends recovery on exit 74, and has the data;
    the same with the fetches handed to a warm ``wal-g daemon``."""
    base = PgCluster.make_base()
    archive = base / "archive"
    source = pg_cluster_factory(base=base, archive_command=f"cp %p {archive}/%f", start=False)
    source.make_dir("archive")
    source.start()
    source.psql("CREATE TABLE t (id int, v text)")
    restored = PgCluster.make_base()
    base_backup(source, restored / "data")
    expected = make_history(source, rounds=6)
    source.stop()

    storage = restored / "storage"
    names = push_archive(archive, storage)
    calls = restored / "calls"
    wrapper = restored / "wal-g-restore.sh"
    (restored / "data" / "recovery.signal").touch()
    cluster = pg_cluster_factory(
        adopt=restored / "data",
        base=restored,
        start=False,
        archive_command=None,
        restore_command=f"{wrapper} wal-fetch %f %p",
        settings={"recovery_target_timeline": "'latest'", "recovery_target_action": "'promote'"},
    )
    cluster.make_dir("calls")
    daemon_log = restored / "daemon.log"
    daemon, socket_path = (None, "")
    if via_daemon:
        daemon, socket_path = start_daemon(cluster, storage, daemon_log)
    write_wrapper(wrapper, storage, calls, socket_path)
    try:
        cluster.start()
        wait_promoted(cluster)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)

    assert int(cluster.psql("SELECT count(*) FROM t")) == expected
    log = [line.split() for line in (calls / "calls.log").read_text().splitlines()]
    fetched = [name for rc, name, _ in log if rc == "0" and is_segment_name(name)]
    assert fetched, cluster.log_tail()
    assert set(fetched) <= set(names)
    last = max(n for n in names if is_segment_name(n))
    assert max(fetched) == last  # replayed to the end of the archive
    assert any(cached == "yes" for _, _, cached in log)  # served from the prefetch cache
    missing = [name for rc, name, _ in log if rc == "74"]
    assert any(is_segment_name(n) and n > last for n in missing)  # recovery ended on 74
    assert {rc for rc, _, _ in log} <= {"0", "74"}, log
    if via_daemon:  # every call was served by the daemon, none ran directly
        served = daemon_log.read_text().count("daemon: wal-fetch done")
        assert served == sum(1 for rc, _, _ in log if rc == "0"), daemon_log.read_text()
    prefetch = restored / "data" / "pg_wal" / ".wal-g" / "prefetch"
    assert not any(is_segment_name(n) for n in os.listdir(prefetch / "running"))
