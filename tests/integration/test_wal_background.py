"""The WAL path's background worker (walg.wal.background), run as the real ``wal-g``.

Each test builds a folder shaped like pg_wal (segments with valid first page headers and
their ``archive_status/*.ready`` files), calls ``wal-g wal-push pg_wal/<name>`` from its
parent as PostgreSQL's archiver would (marking ``.done`` after exit 0), and checks what
the storage holds: every object whole, every marker backed by its object. Workers are
found by the PID in their lock file and stopped by the autouse fixture of tests/conftest.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from servers.workers import wait_gone

from walg.compression import open_decompressed
from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader
from walg.storage.file import TEMP_MARK
from walg.wal.background import worker_pid

WALG = str(Path(sys.executable).parent / "wal-g")
SEGMENT = 4 << 20
MARKERS = Path("walg_data") / "walg_archive_status"


def segment_name(i: int) -> str:
    return f"0000000100000000000000{i:02X}"


def make_pg_wal(root: Path, count: int, seed: int = 15) -> tuple[Path, dict[str, bytes]]:
    """``root/pg_wal`` with ``count`` ready segments of random (incompressible) content."""
    pg_wal = root / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    rng = random.Random(seed)
    content = {}
    for i in range(1, count + 1):
        name = segment_name(i)
        header = LongPageHeader(0xD110, 2, 1, i * SEGMENT, 0, 7, SEGMENT, 8192)
        content[name] = header.pack() + rng.randbytes(SEGMENT - LONG_HEADER_SIZE)
        (pg_wal / name).write_bytes(content[name])
        (pg_wal / "archive_status" / f"{name}.ready").touch()
    return pg_wal, content


def environment(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "WALE_", "AWS_"))}
    return {**env, "WALG_FILE_PREFIX": str(store), "WALG_LOG_LEVEL": "DEBUG", **extra}


def push(
    root: Path, env: dict[str, str], name: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """One archive_command call; on exit 0, PostgreSQL's ``.ready`` -> ``.done``."""
    done = subprocess.run([WALG, "wal-push", f"pg_wal/{name}"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if done.returncode == 0:
        status = root / "pg_wal" / "archive_status"
        (status / f"{name}.ready").rename(status / f"{name}.done")
    return done


def stored(store: Path, name: str) -> bytes | None:
    """The plain content of the archived ``name``, or None if it is not stored."""
    path = store / "wal_005" / f"{name}.lz4"
    if not path.exists():
        return None
    with open(path, "rb") as raw, open_decompressed(raw, "lz4") as out:
        return out.read()


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def holders(path: Path) -> set[int]:
    """PIDs of the processes that have ``path`` open."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == str(path):
                    pids.add(int(proc.name))
                    break
        except OSError:
            continue
    return pids


def check_invariants(pg_wal: Path, store: Path, content: dict[str, bytes]) -> None:
    """No marker without its whole object; no partial object under a final name."""
    for marker in (pg_wal / MARKERS).glob("*.done") if (pg_wal / MARKERS).is_dir() else []:
        name = marker.name[: -len(".done")]
        assert stored(store, name) == content[name], f"marker without a whole {name}"
    for obj in (store / "wal_005").iterdir() if (store / "wal_005").is_dir() else []:
        if TEMP_MARK not in obj.name:
            name = obj.name.split(".")[0]
            assert stored(store, name) == content[name], f"damaged {obj.name}"


def live_worker(pg_wal: Path, timeout: float = 15.0) -> int:
    wait_for(lambda: worker_pid(str(pg_wal)), timeout, "a background worker")
    pid = worker_pid(str(pg_wal))
    assert pid is not None
    wait_for(lambda: (pg_wal / "walg_data" / "walg.sock").exists(), timeout, "its socket")
    return pid


def worker_log(pg_wal: Path) -> str:
    path = pg_wal / "walg_data" / "walg_background.log"
    return path.read_text() if path.exists() else ""


def test_first_push_starts_a_worker_that_uploads_ahead_and_serves_the_rest(
    tmp_path: Path,
) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 6)
    store = tmp_path / "store"
    env = environment(store)
    names = sorted(content)
    assert push(tmp_path, env, names[0]).returncode == 0
    pid = live_worker(pg_wal)
    # the backlog is uploaded and marked before PostgreSQL asks for it
    wait_for(lambda: all((pg_wal / MARKERS / f"{n}.done").exists() for n in names[1:]),
             what="the backlog uploaded ahead")  # fmt: skip
    check_invariants(pg_wal, store, content)
    for name in names[1:]:
        done = push(tmp_path, env, name)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # the worker answered: nothing logged by the call itself
    assert worker_pid(str(pg_wal)) == pid  # one worker served every call
    assert holders(pg_wal / "walg_data" / "walg.sock.lock") == {pid}
    assert not list((pg_wal / MARKERS).iterdir())  # every marker consumed
    for name in names:
        assert stored(store, name) == content[name]
    assert "wal-push: uploaded ahead" in worker_log(pg_wal)


def test_worker_exits_when_idle_and_removes_its_socket(tmp_path: Path) -> None:
    pg_wal, _content = make_pg_wal(tmp_path, 1)
    env = environment(tmp_path / "store", WALG_WAL_BACKGROUND_IDLE="1s")
    assert push(tmp_path, env, segment_name(1)).returncode == 0
    pid = live_worker(pg_wal)
    assert wait_gone(pid, 15), "the worker did not exit when idle"
    assert not (pg_wal / "walg_data" / "walg.sock").exists()
    assert "idle, exiting" in worker_log(pg_wal)


def test_one_worker_per_cluster_when_calls_race(tmp_path: Path) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 6)
    store = tmp_path / "store"
    env = environment(store)
    calls = [
        subprocess.Popen([WALG, "wal-push", f"pg_wal/{name}"], cwd=tmp_path, env=env)
        for name in sorted(content)
    ]
    assert [call.wait(60) for call in calls] == [0] * len(calls)
    pid = live_worker(pg_wal)
    time.sleep(0.5)  # any second worker would be listening by now
    assert holders(pg_wal / "walg_data" / "walg.sock.lock") == {pid}
    for name in content:
        assert stored(store, name) == content[name]


def test_turned_off_or_with_a_daemon_no_worker_starts(tmp_path: Path) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 2)
    store = tmp_path / "store"
    off = environment(store, WALG_WAL_BACKGROUND="false")
    assert push(tmp_path, off, segment_name(1)).returncode == 0
    daemon = environment(store, WALG_DAEMON_SOCKET=str(tmp_path / "nobody.sock"))
    assert push(tmp_path, daemon, segment_name(2)).returncode == 0
    time.sleep(0.3)
    assert worker_pid(str(pg_wal)) is None
    assert not (pg_wal / "walg_data" / "walg.sock").exists()
    # turned off, the call uploaded the other ready segment ahead in a thread of its own
    assert stored(store, segment_name(2)) == content[segment_name(2)]


def test_a_call_configured_otherwise_makes_the_worker_step_aside(tmp_path: Path) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 3)
    first, second = tmp_path / "store1", tmp_path / "store2"
    assert push(tmp_path, environment(first), segment_name(1)).returncode == 0
    pid = live_worker(pg_wal)
    done = push(tmp_path, environment(second), segment_name(2))
    assert done.returncode == 0, done.stderr
    assert stored(second, segment_name(2)) == content[segment_name(2)]  # where it was told
    assert wait_gone(pid, 15), "the worker did not step aside"
    assert "stepping aside" in worker_log(pg_wal)
    # the next call starts a worker with the new settings
    assert push(tmp_path, environment(second), segment_name(3)).returncode == 0
    assert live_worker(pg_wal) != pid


def test_worker_killed_while_idle_is_replaced(tmp_path: Path) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 2)
    store = tmp_path / "store"
    env = environment(store, WALG_UPLOAD_CONCURRENCY="1")
    assert push(tmp_path, env, segment_name(1)).returncode == 0
    pid = live_worker(pg_wal)
    wait_for(lambda: (pg_wal / MARKERS / f"{segment_name(2)}.done").exists())
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    done = push(tmp_path, env, segment_name(2))  # a stale socket: the call works alone
    assert done.returncode == 0, done.stderr
    assert live_worker(pg_wal) != pid
    check_invariants(pg_wal, store, content)
    assert stored(store, segment_name(2)) == content[segment_name(2)]


@pytest.mark.parametrize("moment", ["uploading ahead", "answering a call"])
def test_worker_killed_mid_upload_loses_and_damages_nothing(tmp_path: Path, moment: str) -> None:
    """kill -9 of the worker while its uploads (slowed by WALG_NETWORK_RATE_LIMIT) run:
    nothing partial is stored, no marker vouches for a missing segment, a call waiting for
    its answer works alone and exits 0, and archiving then completes."""
    pg_wal, content = make_pg_wal(tmp_path, 5)
    store = tmp_path / "store"
    env = environment(store, WALG_NETWORK_RATE_LIMIT=str(2 << 20), WALG_UPLOAD_CONCURRENCY="2")
    names = sorted(content)
    assert push(tmp_path, env, names[0]).returncode == 0
    pid = live_worker(pg_wal)
    temp = lambda: any(TEMP_MARK in p.name for p in (store / "wal_005").iterdir())  # noqa: E731
    if moment == "uploading ahead":
        wait_for(temp, what="an upload in flight")
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid)
        check_invariants(pg_wal, store, content)
    else:
        call = subprocess.Popen([WALG, "wal-push", f"pg_wal/{names[1]}"], cwd=tmp_path, env=env,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_for(temp, what="an upload in flight")
        time.sleep(0.3)  # the call is connected and waiting for its answer
        os.kill(pid, signal.SIGKILL)
        _, err = call.communicate(timeout=120)
        assert call.returncode == 0, err
        assert stored(store, names[1]) == content[names[1]]
        (pg_wal / "archive_status" / f"{names[1]}.ready").rename(
            pg_wal / "archive_status" / f"{names[1]}.done"
        )
        check_invariants(pg_wal, store, content)
    for name in sorted(p.name[:-6] for p in (pg_wal / "archive_status").glob("*.ready")):
        done = push(tmp_path, env, name, timeout=120)
        assert done.returncode == 0, done.stderr
        check_invariants(pg_wal, store, content)
    for name in names:
        assert stored(store, name) == content[name]


def test_call_killed_while_the_worker_pushes_is_retried_fine(tmp_path: Path) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 2)
    store = tmp_path / "store"
    env = environment(store, WALG_NETWORK_RATE_LIMIT=str(2 << 20), WALG_UPLOAD_CONCURRENCY="1")
    assert push(tmp_path, env, segment_name(1)).returncode == 0
    live_worker(pg_wal)
    name = segment_name(2)
    call = subprocess.Popen([WALG, "wal-push", f"pg_wal/{name}"], cwd=tmp_path, env=env)
    time.sleep(0.3)
    call.kill()
    call.wait()
    done = push(tmp_path, env, name, timeout=120)  # PostgreSQL tries again
    assert done.returncode == 0, done.stderr
    assert stored(store, name) == content[name]
    check_invariants(pg_wal, store, content)


def test_storage_outage_fails_calls_clearly_then_recovers(tmp_path: Path) -> None:
    pg_wal, content = make_pg_wal(tmp_path, 4)
    store = tmp_path / "store"
    env = environment(store)
    names = sorted(content)
    assert push(tmp_path, env, names[0]).returncode == 0
    pid = live_worker(pg_wal)
    wait_for(lambda: (pg_wal / MARKERS / f"{names[1]}.done").exists())
    # the outage: the storage folder is replaced by a file, every write fails
    (pg_wal / "archive_status" / f"{names[1]}.ready").rename(
        pg_wal / "archive_status" / f"{names[1]}.done"
    )
    moved = tmp_path / "store.away"
    os.rename(store, moved)
    store.write_text("not a folder")
    # names[2] and names[3] may have been uploaded ahead before the outage: use new ones
    _, more = make_more(pg_wal, content, 5, 6)
    started = time.monotonic()
    failed = push(tmp_path, env, segment_name(5), timeout=120)
    assert failed.returncode != 0
    assert failed.stderr.startswith("ERROR: ") and "HINT: " in failed.stderr, failed.stderr
    assert time.monotonic() - started < 60
    assert worker_pid(str(pg_wal)) == pid  # the worker stays
    store.unlink()
    os.rename(moved, store)
    for name in (names[2], names[3], segment_name(5), segment_name(6)):
        done = push(tmp_path, env, name, timeout=120)
        assert done.returncode == 0, done.stderr
    for name, data in {**content, **more}.items():
        assert stored(store, name) == data, name


def make_more(
    pg_wal: Path, content: dict[str, bytes], *numbers: int
) -> tuple[Path, dict[str, bytes]]:
    """More ready segments in ``pg_wal``, numbered ``numbers``."""
    more = {}
    for i in numbers:
        name = segment_name(i)
        header = LongPageHeader(0xD110, 2, 1, i * SEGMENT, 0, 7, SEGMENT, 8192)
        more[name] = header.pack() + bytes(SEGMENT - LONG_HEADER_SIZE)
        (pg_wal / name).write_bytes(more[name])
        (pg_wal / "archive_status" / f"{name}.ready").touch()
    return pg_wal, more


def test_full_spool_does_not_fail_archiving(tmp_path: Path) -> None:
    """pg_wal/walg_data with no room for markers (a full tmpfs where mounting is allowed,
    else a marker folder that cannot be made): uploads ahead cannot be recorded, calls
    still archive every segment and exit 0."""
    pg_wal, content = make_pg_wal(tmp_path, 4)
    spool = pg_wal / "walg_data"
    spool.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(spool)],
                             capture_output=True).returncode == 0  # fmt: skip
    try:
        if mounted:
            fd = os.open(spool / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with pytest.raises(OSError):
                    while True:
                        os.write(fd, bytes(4096))
            finally:
                os.close(fd)
        else:
            (spool / "walg_archive_status").write_text("in the way")
        store = tmp_path / "store"
        env = environment(store)
        for name in sorted(content):
            done = push(tmp_path, env, name)
            assert done.returncode == 0, done.stderr
            assert stored(store, name) == content[name]
        assert not list((spool / "walg_archive_status").glob("*.done"))  # none recorded
    finally:
        pid = worker_pid(str(pg_wal))
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)
        if mounted:
            subprocess.run(["umount", str(spool)], check=True)


def test_wal_fetch_starts_a_worker_that_prefetches(tmp_path: Path) -> None:
    """A cold wal-fetch starts the worker; the worker's answers keep wal-fetch's exit codes:
    0 with DEST in place, 74 for a segment not in the archive, 200 (recovery aborts) for
    one that is there but damaged."""
    _source, content = make_pg_wal(tmp_path / "primary", 7)
    store = tmp_path / "store"
    env = environment(store, WALG_WAL_BACKGROUND="false")
    for name in sorted(content):
        assert push(tmp_path / "primary", env, name).returncode == 0
    damaged = store / "wal_005" / f"{segment_name(7)}.lz4"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    replica = tmp_path / "replica"
    (replica / "pg_wal" / "archive_status").mkdir(parents=True)
    fetch_env = environment(store, WALG_DOWNLOAD_CONCURRENCY="3")
    for name in sorted(content)[:-1]:
        done = subprocess.run(
            [WALG, "wal-fetch", name, "pg_wal/RECOVERYXLOG"], cwd=replica, env=fetch_env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (replica / "pg_wal" / "RECOVERYXLOG").read_bytes() == content[name]
    pid = live_worker(replica / "pg_wal")
    assert "wal-fetch done" in worker_log(replica / "pg_wal")
    missing = subprocess.run([WALG, "wal-fetch", segment_name(0x30), "pg_wal/RECOVERYXLOG"],
                             cwd=replica, env=fetch_env, timeout=60)  # fmt: skip
    assert missing.returncode == 74
    bad = subprocess.run([WALG, "wal-fetch", segment_name(7), "pg_wal/RECOVERYXLOG"],
                         cwd=replica, env=fetch_env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 200, bad.stderr
    assert "ERROR: " in bad.stderr
    assert worker_pid(str(replica / "pg_wal")) == pid
