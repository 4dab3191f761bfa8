"""wal-fetch: finding, decoding and atomically writing WAL files; the prefetch cache."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from walg import config
from walg.cli import main
from walg.compression import EXTENSIONS, compress_stream
from walg.config.settings import CryptoSettings, Secret
from walg.errors import (
    EX_ABORT_RECOVERY,
    ConfigError,
    CryptoError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
)
from walg.postgres.wal import segment_name
from walg.storage.file import FileStorage
from walg.wal.fetch import fetch_wal
from walg.wal.prefetch import (
    PrefetchDirs,
    next_names,
    prefetch,
    prefetcher_running,
    segment_size_of,
    start_prefetch,
    take_cached,
)

SEG = 1 << 20  # the smallest segment size PostgreSQL allows keeps these tests quick
GPG = shutil.which("gpg")


def name_of(segno: int, timeline: int = 1) -> str:
    """The name of 1 MiB segment ``segno``."""
    return segment_name(timeline, segno, SEG)


def segment(segno: int, timeline: int = 1) -> bytes:
    """A 1 MiB WAL segment whose long page header is valid for ``segno``; the rest varies
    with ``segno`` so segments differ."""
    header = struct.pack("<HHIQI4xQII", 0xD110, 0x0002, timeline, segno * SEG, 0, 7, SEG, 8192)
    body = (segno.to_bytes(4, "little") + bytes(range(256)) * 3) * (SEG // 772 + 1)
    return header + body[: SEG - len(header)]


def compressed(data: bytes, method: str) -> bytes:
    """``data`` compressed with walg's codec for ``method``."""
    return b"".join(compress_stream(io.BytesIO(data), method))


def key_of(name: str, method: str) -> str:
    """The object key of WAL file ``name`` stored with ``method``."""
    ext = EXTENSIONS[method]
    return f"wal_005/{name}.{ext}" if ext else f"wal_005/{name}"


@pytest.fixture
def store(tmp_path: Path) -> FileStorage:
    """File storage in a temporary directory (an archive that exists, empty)."""
    (tmp_path / "storage").mkdir()
    return FileStorage(str(tmp_path / "storage"))


@pytest.fixture
def env(store: FileStorage) -> dict[str, str]:
    """walg settings for ``store``: lz4, two prefetch downloads."""
    return {"WALG_FILE_PREFIX": store.directory, "WALG_DOWNLOAD_CONCURRENCY": "2"}


@pytest.fixture
def pg_wal(tmp_path: Path) -> Path:
    """An empty directory standing for pg_wal."""
    path = tmp_path / "pg_wal"
    path.mkdir()
    return path


def put(store: FileStorage, segno: int, method: str = "lz4") -> bytes:
    """Archive segment ``segno`` compressed with ``method``; return its plain bytes."""
    data = segment(segno)
    store.put_object(key_of(name_of(segno), method), compressed(data, method))
    return data


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def wait_idle(dirs: PrefetchDirs) -> None:
    """Wait until no prefetcher holds the lock of ``dirs``."""
    wait_until(lambda: not prefetcher_running(dirs))


@pytest.fixture
def held_lock(pg_wal: Path) -> Iterator[PrefetchDirs]:
    """The prefetch lock of ``pg_wal`` held by the test, as a live prefetcher would."""
    dirs = PrefetchDirs.beside(str(pg_wal / "RECOVERYXLOG"))
    os.makedirs(dirs.running)
    with open(dirs.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield dirs


# --- finding and decoding -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lz4", "lzma", "brotli", "none"])
def test_each_extension_is_found(
    method: str, store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """A segment pushed with any method is found and decoded, whatever is configured."""
    data = put(store, 3, method)
    dest = pg_wal / "RECOVERYXLOG"
    fetch_wal(store, config.load(env), name_of(3), str(dest))
    assert dest.read_bytes() == data


@pytest.mark.parametrize(
    ("configured", "expected"),
    [("lz4", b"1\t0/3000000\tfrom lz4\n"), ("brotli", b"1\t0/3000000\tbr!\n")],
)
def test_configured_method_is_tried_first(
    configured: str, expected: bytes, store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """When copies exist under several extensions, the configured method's copy wins."""
    lz4, br = b"1\t0/3000000\tfrom lz4\n", b"1\t0/3000000\tbr!\n"
    store.put_object("wal_005/00000002.history.lz4", compressed(lz4, "lz4"))
    store.put_object("wal_005/00000002.history.br", compressed(br, "brotli"))
    settings = config.load({**env, "WALG_COMPRESSION_METHOD": configured})
    fetch_wal(store, settings, "00000002.history", str(pg_wal / "RECOVERYHISTORY"))
    assert (pg_wal / "RECOVERYHISTORY").read_bytes() == expected


def test_missing_segment_exits_74(
    store: FileStorage, env: dict[str, str], pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A segment archived under no extension raises ObjectNotFound: exit 74, no file."""
    dest = pg_wal / "RECOVERYXLOG"
    with pytest.raises(ObjectNotFound):
        fetch_wal(store, config.load(env), name_of(9), str(dest))
    assert main(["wal-fetch", name_of(9), str(dest)], environ=env) == 74
    assert name_of(9) in capsys.readouterr().err
    assert os.listdir(pg_wal) == []


def test_missing_storage_folder_is_not_the_end_of_the_archive(
    tmp_path: Path, pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A storage folder that does not exist (an unmounted file system, a mistyped prefix)
    aborts recovery instead of answering "not archived" (74), which would end it early."""
    missing = tmp_path / "not-mounted" / "walg"
    dest = pg_wal / "RECOVERYXLOG"
    env = {"WALG_FILE_PREFIX": str(missing)}
    assert main(["wal-fetch", name_of(9), str(dest), "--no-prefetch"], environ=env) == (
        EX_ABORT_RECOVERY
    )
    assert f"the storage folder {missing} does not exist" in capsys.readouterr().err
    assert os.listdir(pg_wal) == []


@pytest.mark.parametrize(("ext", "method"), [("zst", "zstd"), ("gz", "gzip"), ("lzo", "lzo")])
def test_unreadable_method_is_not_reported_missing(
    store: FileStorage, env: dict[str, str], pg_wal: Path, ext: str, method: str
) -> None:
    """A copy only in a format walg cannot read (WAL-G's .zst, .gz, .lzo) fails clearly,
    never 74."""
    store.put_object(f"wal_005/{name_of(4)}.{ext}", b"\x28\xb5\x2f\xfd")
    with pytest.raises(ConfigError, match=method):
        fetch_wal(store, config.load(env), name_of(4), str(pg_wal / "RECOVERYXLOG"))


def test_corrupt_object_leaves_nothing(
    store: FileStorage, env: dict[str, str], pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt object raises IntegrityError and exits 200 (recovery must stop, not end);
    no DEST, no temporary file."""
    damaged = bytearray(compressed(segment(5), "lz4"))
    damaged[len(damaged) // 2 :] = bytes(len(damaged) - len(damaged) // 2)
    store.put_object(key_of(name_of(5), "lz4"), bytes(damaged))
    dest = pg_wal / "RECOVERYXLOG"
    with pytest.raises(IntegrityError):
        fetch_wal(store, config.load(env), name_of(5), str(dest))
    assert os.listdir(pg_wal) == []
    assert main(["wal-fetch", name_of(5), str(dest)], environ=env) == EX_ABORT_RECOVERY
    assert "ERROR:" in capsys.readouterr().err
    assert os.listdir(pg_wal) == []


def test_dest_is_replaced_atomically(store: FileStorage, env: dict[str, str], pg_wal: Path) -> None:
    """An existing DEST is replaced by rename (its old inode keeps the old bytes)."""
    data = put(store, 6)
    dest = pg_wal / "RECOVERYXLOG"
    dest.write_bytes(b"old")
    os.link(dest, pg_wal / "old-inode")
    fetch_wal(store, config.load(env), name_of(6), str(dest))
    assert dest.read_bytes() == data
    assert (pg_wal / "old-inode").read_bytes() == b"old"
    assert sorted(os.listdir(pg_wal)) == ["RECOVERYXLOG", "old-inode"]


def test_unwritable_destination_is_a_clear_error(
    store: FileStorage, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DEST in a missing directory exits 200 (stop recovery) naming the path, not as an
    internal error."""
    put(store, 7)
    dest = tmp_path / "no-such-dir" / "RECOVERYXLOG"
    assert main(["wal-fetch", name_of(7), str(dest)], environ=env) == EX_ABORT_RECOVERY
    err = capsys.readouterr().err
    assert f"cannot write {dest}" in err
    assert "internal error" not in err


# --- encryption -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_key() -> Iterator[str]:
    """A throwaway ed25519 key, armored (generated once for this module)."""
    if GPG is None:
        pytest.skip("gpg is not installed")
    home = tempfile.mkdtemp(prefix="walg-test-walfetch-key-")
    run = [GPG, "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run([*run, "--quick-gen-key", "wal fetch test"], check=True, timeout=60)
        key = subprocess.run(
            [*run, "--armor", "--export-secret-keys"], check=True, capture_output=True
        ).stdout.decode()
        yield key
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def put_encrypted(store: FileStorage, segno: int, key: str, method: str = "lz4") -> bytes:
    """Archive segment ``segno`` compressed, then encrypted to ``key``; return it plain."""
    from walg.crypto import Crypter

    data = segment(segno)
    with Crypter(CryptoSettings(pgp_key=Secret(key))) as crypter:
        sealed = b"".join(crypter.encrypt_stream(io.BytesIO(compressed(data, method))))
    store.put_object(key_of(name_of(segno), method), sealed)
    return data


def test_encrypted_segment_is_decrypted(
    private_key: str, store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """An encrypted segment is decrypted with the configured key, then decompressed."""
    data = put_encrypted(store, 8, private_key, "brotli")
    dest = pg_wal / "RECOVERYXLOG"
    fetch_wal(store, config.load({**env, "WALG_PGP_KEY": private_key}), name_of(8), str(dest))
    assert dest.read_bytes() == data


def test_encrypted_segment_without_key_is_a_crypto_error(
    private_key: str, store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """An encrypted object read without a key raises CryptoError naming the object."""
    put_encrypted(store, 8, private_key)
    with pytest.raises(CryptoError, match=key_of(name_of(8), "lz4")):
        fetch_wal(store, config.load(env), name_of(8), str(pg_wal / "RECOVERYXLOG"))
    assert os.listdir(pg_wal) == []


def test_encrypted_segments_are_prefetched(
    private_key: str, store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """The prefetcher decrypts in parallel threads with one shared key import."""
    data = {n: put_encrypted(store, n, private_key) for n in (1, 2, 3)}
    keyed = {**env, "WALG_PGP_KEY": private_key}
    dest = pg_wal / "RECOVERYXLOG"
    assert main(["wal-fetch", name_of(1), str(dest)], environ=keyed) == 0
    dirs = PrefetchDirs.beside(str(dest))
    wait_idle(dirs)
    for n in (2, 3):
        assert Path(dirs.root, name_of(n)).read_bytes() == data[n]


# --- the prefetch cache ---------------------------------------------------------------------


def test_segment_size_comes_from_a_matching_long_header() -> None:
    """The segment size is read from a long page header only if it names that segment."""
    assert segment_size_of(segment(5), name_of(5)) == SEG
    assert segment_size_of(segment(5), name_of(6)) is None  # another segment's page address
    assert segment_size_of(segment(5)[:20], name_of(5)) is None
    assert segment_size_of(bytes(64), name_of(5)) is None
    assert segment_size_of(segment(5), "00000001.history") is None
    # WALG_WAL_CHECK_CONTENT=false: the file's size, if segments can have it
    assert segment_size_of(bytes(64), name_of(5), SEG, checked=False) == SEG
    assert segment_size_of(bytes(64), name_of(5), SEG + 1, checked=False) is None
    assert segment_size_of(bytes(64), "00000001.history", SEG, checked=False) is None


def test_next_names_follow_the_timeline() -> None:
    """The names after a segment stay on its timeline and respect the segment size."""
    assert next_names(name_of(4094), SEG, 3) == [name_of(4095), name_of(4096), name_of(4097)]
    assert name_of(4096) == "000000010000000100000000"


def test_prefetch_then_serve_from_cache(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """After fetching N, N+1..N+k appear in the cache; N+1 is then served from it."""
    data = {n: put(store, n) for n in range(1, 6)}
    dest = pg_wal / "RECOVERYXLOG"
    assert main(["wal-fetch", name_of(1), str(dest)], environ=env) == 0
    dirs = PrefetchDirs.beside(str(dest))
    wait_idle(dirs)
    assert sorted(os.listdir(dirs.root)) == [".lock", name_of(2), name_of(3), "running"]
    assert os.listdir(dirs.running) == []
    store.delete_objects([key_of(name_of(2), "lz4")])  # only the cache can serve it now
    assert main(["wal-fetch", name_of(2), str(dest)], environ=env) == 0
    assert dest.read_bytes() == data[2]
    wait_idle(dirs)
    assert not Path(dirs.root, name_of(2)).exists()
    assert Path(dirs.root, name_of(4)).read_bytes() == data[4]


def test_prefetch_stops_at_the_end_of_the_archive(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """A missing next segment ends prefetching quietly; nothing partial is left."""
    put(store, 1)
    put(store, 2)
    dest = pg_wal / "RECOVERYXLOG"
    wide = {**env, "WALG_DOWNLOAD_CONCURRENCY": "5"}
    assert main(["wal-fetch", name_of(1), str(dest)], environ=wide) == 0
    dirs = PrefetchDirs.beside(str(dest))
    wait_idle(dirs)
    assert sorted(os.listdir(dirs.root)) == [".lock", name_of(2), "running"]
    assert os.listdir(dirs.running) == []


def test_older_cache_files_are_removed(
    store: FileStorage, env: dict[str, str], held_lock: PrefetchDirs, pg_wal: Path
) -> None:
    """Fetching segment N removes cached and running files of older segments only."""
    for n in (1, 2, 5):
        Path(held_lock.root, name_of(n)).write_bytes(segment(n))
    Path(held_lock.running, name_of(2)).write_bytes(b"partial")
    Path(held_lock.root, "00000001.history").write_bytes(b"kept")
    put(store, 3)
    assert main(["wal-fetch", name_of(3), str(pg_wal / "RECOVERYXLOG")], environ=env) == 0
    assert sorted(os.listdir(held_lock.root)) == [
        ".lock",
        "00000001.history",
        name_of(5),
        "running",
    ]
    assert os.listdir(held_lock.running) == []


def test_partial_file_in_running_is_never_served(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """A leftover partial download in running/ is ignored: the archive decides (here: 74)."""
    dirs = PrefetchDirs.beside(str(pg_wal / "RECOVERYXLOG"))
    os.makedirs(dirs.running)
    Path(dirs.running, name_of(3)).write_bytes(segment(3)[: SEG // 2])
    assert main(["wal-fetch", name_of(3), str(pg_wal / "RECOVERYXLOG")], environ=env) == 74
    assert not (pg_wal / "RECOVERYXLOG").exists()


def test_damaged_cache_file_is_discarded(
    store: FileStorage, env: dict[str, str], held_lock: PrefetchDirs, pg_wal: Path
) -> None:
    """A cached file whose size does not match its header is removed and storage is used."""
    data = put(store, 3)
    Path(held_lock.root, name_of(3)).write_bytes(segment(3)[: SEG // 2])
    dest = pg_wal / "RECOVERYXLOG"
    assert main(["wal-fetch", name_of(3), str(dest)], environ=env) == 0
    assert dest.read_bytes() == data
    assert not Path(held_lock.root, name_of(3)).exists()


def test_misnamed_object_is_neither_prefetched_nor_restored(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """An object that decodes but holds another segment (or is cut short with no
    compression to notice it) never reaches the cache or DEST: wal-fetch exits 200."""
    put(store, 1)
    store.put_object(key_of(name_of(2), "lz4"), compressed(segment(4), "lz4"))
    store.put_object(key_of(name_of(3), "none"), segment(3)[: SEG // 2])
    dest = pg_wal / "RECOVERYXLOG"
    assert main(["wal-fetch", name_of(1), str(dest)], environ=env) == 0
    dirs = PrefetchDirs.beside(str(dest))
    wait_idle(dirs)
    assert sorted(os.listdir(dirs.root)) == [".lock", "running"]
    assert os.listdir(dirs.running) == []
    dest.unlink()
    for segno in (2, 3):
        assert main(["wal-fetch", name_of(segno), str(dest)], environ=env) == EX_ABORT_RECOVERY
        assert sorted(os.listdir(pg_wal)) == [".wal-g"]


def test_running_download_is_awaited(held_lock: PrefetchDirs, pg_wal: Path) -> None:
    """A segment a live prefetcher is still writing is served once it is complete."""
    running, cached = Path(held_lock.running, name_of(3)), Path(held_lock.root, name_of(3))
    data = segment(3)
    running.write_bytes(data[:1000])

    def finish() -> None:
        for size in (SEG // 4, SEG // 2, SEG):
            time.sleep(0.05)
            running.write_bytes(data[:size])
        running.rename(cached)

    writer = threading.Thread(target=finish)
    writer.start()
    dest = pg_wal / "RECOVERYXLOG"
    try:
        assert take_cached(held_lock, name_of(3), str(dest)) == SEG
    finally:
        writer.join()
    assert dest.read_bytes() == data


def test_stalled_download_is_given_up(held_lock: PrefetchDirs, pg_wal: Path) -> None:
    """A running download that stops growing is abandoned after the stall timeout."""
    Path(held_lock.running, name_of(3)).write_bytes(segment(3)[:1000])
    start = time.monotonic()
    assert take_cached(held_lock, name_of(3), str(pg_wal / "RECOVERYXLOG"), stall=0.2) is None
    assert 0.2 <= time.monotonic() - start < 5


def test_no_prefetch_for_history_files(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """Fetching a .history file neither uses nor creates the prefetch cache."""
    store.put_object("wal_005/00000002.history.lz4", compressed(b"1\t0/3000000\treason\n", "lz4"))
    argv = ["wal-fetch", "00000002.history", str(pg_wal / "RECOVERYHISTORY")]
    assert main(argv, environ=env) == 0
    assert os.listdir(pg_wal) == ["RECOVERYHISTORY"]


def test_prefetch_problems_do_not_change_the_exit_code(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """A prefetch cache that cannot be created is only logged: the fetch still succeeds."""
    data = put(store, 1)
    put(store, 2)
    (pg_wal / ".wal-g").write_bytes(b"not a directory")
    assert main(["wal-fetch", name_of(1), str(pg_wal / "RECOVERYXLOG")], environ=env) == 0
    assert (pg_wal / "RECOVERYXLOG").read_bytes() == data


def test_duplicate_prefetchers_are_prevented(
    store: FileStorage, env: dict[str, str], held_lock: PrefetchDirs, pg_wal: Path
) -> None:
    """While a prefetcher holds the lock, wal-fetch serves its segment but starts no other."""
    for n in (1, 2, 3):
        put(store, n)
    assert not start_prefetch(config.load(env), held_lock, name_of(1), SEG)
    assert main(["wal-fetch", name_of(1), str(pg_wal / "RECOVERYXLOG")], environ=env) == 0
    time.sleep(0.3)
    assert sorted(os.listdir(held_lock.root)) == [".lock", "running"]
    assert os.listdir(held_lock.running) == []


PROBE = """
import json, sys
from walg.cli import main
code = main(sys.argv[1:])
print(json.dumps([code, sorted(sys.modules)]))
"""
HEAVY = (
    "structlog",
    "multiprocess",
    "boto3",
    "botocore",
    "google",
    "psycopg2",
    "walg.pipeline",
    "walg.crypto",
)


def probe(argv: list[str], env: dict[str, str]) -> tuple[int, set[str]]:
    """Run ``wal-g`` in a fresh interpreter; return its exit code and loaded modules."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # a prefetcher inherits stderr: do not wait for it
        text=True,
        timeout=60,
    )
    code, modules = json.loads(done.stdout.splitlines()[-1])
    return code, set(modules)


def loaded(modules: set[str], packages: tuple[str, ...]) -> set[str]:
    """The modules that are, or are inside, one of ``packages``."""
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def test_wal_fetch_loads_no_heavy_library(
    store: FileStorage, env: dict[str, str], pg_wal: Path, clean_env: dict[str, str]
) -> None:
    """A fetch from file storage loads no structlog, pipeline, cloud or gpg module (also when
    a prefetcher already runs), and a fetch from the cache does not even load storage."""
    for n in (1, 2, 3):
        put(store, n)
    dest = str(pg_wal / "RECOVERYXLOG")
    code, modules = probe(["wal-fetch", name_of(1), dest], {**clean_env, **env})
    assert code == 0
    assert loaded(modules, HEAVY) == set()
    wait_idle(PrefetchDirs.beside(dest))
    code, modules = probe(["wal-fetch", name_of(2), dest], {**clean_env, **env})
    assert code == 0
    assert loaded(modules, (*HEAVY, "walg.storage", "walg.compression", "lz4")) == set()
    dirs = PrefetchDirs.beside(dest)
    wait_idle(dirs)
    with open(dirs.lock, "w") as lock:  # a live prefetcher: wal-fetch must not log about it
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, modules = probe(["wal-fetch", name_of(3), dest], {**clean_env, **env})
    assert code == 0
    assert loaded(modules, HEAVY) == set()


def test_sigterm_removes_the_temporary_file(
    store: FileStorage, env: dict[str, str], pg_wal: Path, clean_env: dict[str, str]
) -> None:
    """SIGTERM (PostgreSQL's fast shutdown) mid-download leaves no temporary file, and the
    process dies of SIGTERM as PostgreSQL expects."""
    fifo = Path(store.directory, "wal_005", name_of(3))  # an uncompressed object that stalls
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    wal_g = Path(sys.executable).parent / "wal-g"
    argv = [str(wal_g), "wal-fetch", name_of(3), str(pg_wal / "RECOVERYXLOG")]
    proc = subprocess.Popen(argv, env={**clean_env, **env}, stderr=subprocess.DEVNULL)
    try:
        with open(fifo, "wb") as writer:  # opens once wal-fetch opened the object
            writer.write(segment(3)[:100_000])
            writer.flush()
            wait_until(lambda: len(os.listdir(pg_wal)) == 1)
            time.sleep(0.2)  # let it block in read(), which the signal then interrupts
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # The signal came just before read() blocked: Python runs its handler once
                # read() returns, so give it some data.
                with contextlib.suppress(BrokenPipeError):
                    writer.write(bytes(1 << 16))
                    writer.flush()
            assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
    assert os.listdir(pg_wal) == []


class _FailingOnce(FileStorage):
    """File storage whose first read of each key fails as a damaged transfer would."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.failed: set[str] = set()
        self._lock = threading.Lock()

    def _read(self, key: str, offset: int) -> BinaryIO:
        with self._lock:
            first = key not in self.failed
            self.failed.add(key)
        if first:
            raise StorageError(f"connection reset while reading {key}")
        return super()._read(key, offset)


def test_a_failed_prefetch_is_tried_once_more(
    store: FileStorage, env: dict[str, str], pg_wal: Path
) -> None:
    """A prefetch whose first read fails (a storage blip, a gpg hiccup on a loaded host)
    is tried once more, so the segment is still in the cache when PostgreSQL asks."""
    data = {n: put(store, n) for n in (2, 3)}
    dirs = PrefetchDirs.beside(str(pg_wal / "RECOVERYXLOG"))
    os.makedirs(dirs.running)
    flaky = _FailingOnce(store.directory)
    prefetch(config.load(env), dirs, [name_of(2), name_of(3)], SEG, storage=flaky)
    for n in (2, 3):
        assert Path(dirs.root, name_of(n)).read_bytes() == data[n]
    assert flaky.failed == {key_of(name_of(n), "lz4") for n in (2, 3)}
