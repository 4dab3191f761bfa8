"""restore_command through ``wal-g daemon``: ``wal-g wal-fetch`` with WALG_DAEMON_SOCKET is
served by the warm daemon (prefetching in its own threads), with wal-fetch's exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from test_wal_daemon import base_env, short_dir, stop, wait_listening  # type: ignore[import-not-found]  # noqa: F401
from test_wal_fetch import SEG, compressed, key_of, name_of, segment, wait_idle  # type: ignore[import-not-found]

from walg.wal.prefetch import PrefetchDirs


@contextmanager
def fetch_daemon(
    sock: Path, store: Path, home: Path, settings: Mapping[str, str] | None = None
) -> Iterator[None]:
    """A daemon prefetching 3 segments ahead (clients are configured for 1)."""
    env = {
        **base_env(home),
        "WALG_FILE_PREFIX": str(store),
        "WALG_DOWNLOAD_CONCURRENCY": "3",
        **(settings or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "walg", "daemon", str(sock)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_listening(proc, sock)
        yield
    finally:
        stop(proc)


def put(store: Path, segno: int) -> bytes:
    data = segment(segno)
    path = store / key_of(name_of(segno), "lz4")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compressed(data, "lz4"))
    return data


def wal_fetch(
    pgdata: Path,
    sock: Path,
    store: Path,
    home: Path,
    name: str,
    settings: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``wal-g wal-fetch NAME pg_wal/RECOVERYXLOG`` as restore_command runs it (cwd PGDATA)."""
    env = {
        **base_env(home),
        "WALG_DAEMON_SOCKET": str(sock),
        "WALG_FILE_PREFIX": str(store),
        "WALG_DOWNLOAD_CONCURRENCY": "1",
        **(settings or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "walg", "wal-fetch", name, "pg_wal/RECOVERYXLOG"],
        cwd=pgdata,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cached(pgdata: Path) -> list[str]:
    """The segments in the prefetch cache, once no prefetcher holds its lock."""
    dirs = PrefetchDirs.beside(str(pgdata / "pg_wal" / "RECOVERYXLOG"))
    wait_idle(dirs)
    return sorted(p.name for p in Path(dirs.root).glob("0*"))


def test_fetch_through_the_daemon_serves_and_prefetches(short_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    store, pgdata = tmp_path / "store", tmp_path / "pgdata"
    (pgdata / "pg_wal").mkdir(parents=True)
    data = {n: put(store, n) for n in range(1, 7)}
    with fetch_daemon(short_dir / "d.sock", store, tmp_path):
        done = wal_fetch(pgdata, short_dir / "d.sock", store, tmp_path, name_of(1))
        assert done.returncode == 0, done.stderr
        assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == data[1]
        # Three ahead: the daemon's setting, not the client's (one): the daemon served it.
        assert cached(pgdata) == [name_of(2), name_of(3), name_of(4)]
        (store / key_of(name_of(2), "lz4")).unlink()  # only the cache can serve it now
        done = wal_fetch(pgdata, short_dir / "d.sock", store, tmp_path, name_of(2))
        assert done.returncode == 0, done.stderr
        assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == data[2]
    assert len(data[1]) == SEG


def test_missing_segment_through_the_daemon_exits_74(short_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    store, pgdata = tmp_path / "store", tmp_path / "pgdata"
    (pgdata / "pg_wal").mkdir(parents=True)
    put(store, 1)
    with fetch_daemon(short_dir / "d.sock", store, tmp_path):
        done = wal_fetch(pgdata, short_dir / "d.sock", store, tmp_path, name_of(9))
    assert done.returncode == 74
    assert "ERROR: " in done.stderr and "Traceback" not in done.stderr
    assert not (pgdata / "pg_wal" / "RECOVERYXLOG").exists()


def test_fetch_for_another_storage_is_refused(short_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    store, pgdata = tmp_path / "store", tmp_path / "pgdata"
    (pgdata / "pg_wal").mkdir(parents=True)
    put(store, 1)
    other = tmp_path / "other"
    other.mkdir()
    with fetch_daemon(short_dir / "d.sock", store, tmp_path):
        done = wal_fetch(pgdata, short_dir / "d.sock", other, tmp_path, name_of(1))
    assert done.returncode == 200  # a misconfigured restore_command stops recovery
    assert "archives to" in done.stderr or "configured for" in done.stderr
    assert not (pgdata / "pg_wal" / "RECOVERYXLOG").exists()


def test_without_a_daemon_wal_fetch_runs_directly(short_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    store, pgdata = tmp_path / "store", tmp_path / "pgdata"
    (pgdata / "pg_wal").mkdir(parents=True)
    data = put(store, 1)
    done = wal_fetch(pgdata, short_dir / "absent.sock", store, tmp_path, name_of(1))
    assert done.returncode == 0, done.stderr
    assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == data


def test_fetch_with_another_key_is_refused(short_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """A restore_command configured with a PGP key the daemon does not have is refused and
    stops recovery (exit 200, naming the setting): the daemon would read with its own."""
    store, pgdata = tmp_path / "store", tmp_path / "pgdata"
    (pgdata / "pg_wal").mkdir(parents=True)
    put(store, 1)
    client = {"WALG_PGP_KEY_PATH": str(tmp_path / "key.asc")}
    with fetch_daemon(short_dir / "d.sock", store, tmp_path):
        done = wal_fetch(pgdata, short_dir / "d.sock", store, tmp_path, name_of(1), client)
    assert done.returncode == 200
    assert "runs with other settings than this wal-fetch: WALG_PGP_KEY_PATH differs" in done.stderr
    assert not (pgdata / "pg_wal" / "RECOVERYXLOG").exists()


def test_fetch_with_another_compression_is_served(short_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The compression method does not change what a fetch reads: the daemon serves it."""
    store, pgdata = tmp_path / "store", tmp_path / "pgdata"
    (pgdata / "pg_wal").mkdir(parents=True)
    data = {n: put(store, n) for n in range(1, 5)}
    client = {"WALG_COMPRESSION_METHOD": "brotli", "WALG_PREVENT_WAL_OVERWRITE": "true"}
    with fetch_daemon(short_dir / "d.sock", store, tmp_path):
        done = wal_fetch(pgdata, short_dir / "d.sock", store, tmp_path, name_of(1), client)
        assert done.returncode == 0, done.stderr
        assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == data[1]
        # Three ahead: the daemon's setting, not the client's (one): the daemon served it.
        assert cached(pgdata) == [name_of(2), name_of(3), name_of(4)]
