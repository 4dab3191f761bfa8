"""WALG_DAEMON_WAL_UPLOAD_TIMEOUT: ``wal-g daemon`` bounds each wal-push it serves (walg's
protocol and WAL-G's), as WAL-G's daemon does; past the limit the upload stops at its next
chunk, its put is aborted (nothing stored) and the answer is an error naming the setting.
The background worker (a WalDaemon too) has no such limit. In-process, on file storage
whose put reads slowly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from test_wal_daemon import CONTENT, SEGMENT, pgdata, short_dir  # type: ignore[import-not-found]  # noqa: F401

from walg.config import load
from walg.storage.file import FileStorage
from walg.wal.daemon import WalDaemon
from walg.wal.daemon_client import request
from walg.wal.daemon_walg_client import ERROR, OK, PUSH, encode_message
from walg.wal.worker import BackgroundWorker

SETTING = "WALG_DAEMON_WAL_UPLOAD_TIMEOUT"


class _SlowReader:
    """``source`` read with a pause before each read."""

    def __init__(self, source: BinaryIO, pause: float) -> None:
        self._source, self._pause = source, pause

    def read(self, size: int = -1) -> bytes:
        time.sleep(self._pause)
        return self._source.read(min(size, 4096) if size and size > 0 else 4096)

    def readinto(self, buffer: Any) -> int:
        time.sleep(self._pause)
        return self._source.readinto(memoryview(buffer)[:4096])  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


class SlowStorage(FileStorage):
    """File storage whose put pauses ``pause`` seconds before each read of the stream."""

    pause = 0.0

    def _put(self, key: str, source: BinaryIO) -> None:
        super()._put(key, _SlowReader(source, self.pause))  # type: ignore[arg-type]


def _env(store: Path, home: Path, limit: str) -> dict[str, str]:
    return {"WALG_FILE_PREFIX": str(store), SETTING: limit, "HOME": str(home)}


@contextmanager
def _daemon(sock: Path, store: Path, home: Path, limit: str, pause: float) -> Iterator[WalDaemon]:
    settings = load(_env(store, home, limit))
    storage = SlowStorage(str(store))
    storage.pause = pause
    running = WalDaemon(settings, str(sock), storage)
    running.bind()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        running.force.set()
        thread.join(10)


def _objects(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def _walg_protocol_push(sock: Path, name: str) -> bytes:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock))
        conn.sendall(encode_message(PUSH, [name.encode()]))
        conn.shutdown(socket.SHUT_WR)
        return conn.recv(8)


def test_the_setting_loads_with_wal_g_default() -> None:
    assert load({}).wal.daemon_upload_timeout == 60.0
    assert load({SETTING: "1m30s"}).wal.daemon_upload_timeout == 90.0
    assert load({SETTING: "30s"}).noted == ()  # implemented: no "has no effect" warning


def test_push_past_the_limit_is_cancelled_and_nothing_stored(
    short_dir: Path, pgdata: Path, tmp_path: Path  # noqa: F811
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    sock = short_dir / "d.sock"
    segment = str(pgdata / "pg_wal" / SEGMENT)
    with _daemon(sock, store, tmp_path, "300ms", pause=0.2):
        started = time.monotonic()
        answer = request(str(sock), segment, "", _env(store, tmp_path, "300ms"))
        elapsed = time.monotonic() - started
        assert answer is not None
        code, message = answer
        assert code == 1
        assert SETTING in message and "cancelled" in message
        assert elapsed < 10
        # WAL-G's protocol (an absolute path, taken as it is): 'E'
        started = time.monotonic()
        assert _walg_protocol_push(sock, segment) == ERROR
        assert time.monotonic() - started < 10
    assert [o for o in _objects(store) if SEGMENT in o] == []
    assert not any(".tmp" in o or "tmp" in Path(o).name for o in _objects(store))


def test_push_under_the_limit_succeeds(
    short_dir: Path, pgdata: Path, tmp_path: Path  # noqa: F811
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    sock = short_dir / "d.sock"
    segment = str(pgdata / "pg_wal" / SEGMENT)
    with _daemon(sock, store, tmp_path, "30s", pause=0.001):
        assert request(str(sock), segment, "", _env(store, tmp_path, "30s")) == (0, "")
        assert _walg_protocol_push(sock, segment) == OK
    assert [o for o in _objects(store) if SEGMENT in o] == [f"wal_005/{SEGMENT}.lz4"]
    assert len(CONTENT) == 1 << 20


def test_the_background_worker_has_no_such_limit() -> None:
    assert WalDaemon.upload_limited is True
    assert BackgroundWorker.upload_limited is False
