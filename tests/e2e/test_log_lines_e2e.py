"""What a DBA sees from a real ``wal-g backup-push``: on a terminal a progress bar that ends
at 100% and log lines of their own; in a pipe WAL-G's text lines or, with
WALG_LOG_FORMAT=json, JSON objects; LSNs as PostgreSQL writes them, sizes readable in text."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
from pathlib import Path

from conftest_helpers import WALG, scrubbed_env  # type: ignore[import-not-found]
from servers.logtext import LINE
from servers.postgres import PgCluster

LSN = r"[0-9A-F]{1,8}/[0-9A-F]{1,8}"
BAR = re.compile(r"^backup-push \[[# ]{30}\] +\d+\.\d% ")


def push_env(cluster: PgCluster, storage: Path, **extra: str) -> dict[str, str]:
    return {**scrubbed_env(), **cluster.env, "WALG_FILE_PREFIX": str(storage),
            "WALG_ARCHIVE_CHECK": "false", **extra}  # fmt: skip


def on_a_pty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``wal-g args`` with stderr on a pseudo-terminal: exit code, what it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([WALG, *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)  # fmt: skip
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=300)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode()


def test_backup_push_on_a_terminal(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """The bar ends at 100%; every other line is a whole WAL-G line; LSNs read 0/6000028."""
    code, output = on_a_pty(["backup-push", str(pg_cluster.data_dir)],
                            push_env(pg_cluster, tmp_path / "store"))  # fmt: skip
    assert code == 0, output
    segments = [s for line in output.split("\r\n") for s in line.split("\r") if s.strip()]
    bars = [s for s in segments if BAR.match(s)]
    assert bars and "100.0%" in bars[-1], output
    assert all(BAR.match(s) or LINE.match(s) for s in segments), output
    for line in output.split("\r\n"):
        assert "INFO: " not in line or line.startswith("INFO: "), repr(line)
    assert re.search(rf"INFO: .* backup started .*lsn={LSN} ", output), output
    assert re.search(rf"backup finished .*finish_lsn={LSN} .*size=\d+\.\d [KMG]iB", output)


def test_backup_push_in_a_pipe_as_json(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """WALG_LOG_FORMAT=json in a pipe: JSON objects only; LSN strings, byte counts."""
    env = push_env(pg_cluster, tmp_path / "store", WALG_LOG_FORMAT="json")
    done = subprocess.run([WALG, "backup-push", str(pg_cluster.data_dir)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    finished = next(r for r in records if r["event"] == "backup finished")
    started = next(r for r in records if r["event"] == "backup started")
    assert re.fullmatch(LSN, started["lsn"]) and re.fullmatch(LSN, finished["finish_lsn"])
    assert isinstance(finished["size"], int) and finished["size"] > 0
