"""Stopping walg's background workers (walg.wal.background) that tests started.

A wal-push or wal-fetch run in a directory that looks like pg_wal starts a worker that
lives until it is idle for WALG_WAL_BACKGROUND_IDLE or its socket file goes away. Tests
stop the ones they started, by the PID the worker writes into its lock file (never by
name): ``PgCluster.cleanup`` for its pg_wal, and an autouse fixture for ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from walg.wal.background import worker_pid

__all__ = ["stop_workers", "wait_gone"]


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def stop_workers(root: Path, kill_after: float = 10.0) -> list[int]:
    """SIGTERM every live worker whose pg_wal is under ``root`` (SIGKILL after
    ``kill_after`` s); their PIDs."""
    pids = []
    with contextlib.suppress(OSError):
        for lock in root.rglob("walg_data/walg.sock.lock"):
            pid = worker_pid(str(lock.parent.parent))
            if pid is None:
                continue
            pids.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for pid in pids:
        if not wait_gone(pid, kill_after):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids
