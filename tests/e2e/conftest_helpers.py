"""Helpers shared by the end-to-end tests (importable, unlike conftest.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

WALG = str(Path(sys.executable).parent / "wal-g")


def scrubbed_env() -> dict[str, str]:
    """This process's environment without anything walg reads."""
    prefixes = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def archive_now(cluster: Any, timeout: float = 30.0) -> str:
    """Write a little WAL, switch segments, and wait until the archiver has stored the
    segment (archive_command runs asynchronously); returns that segment's name."""
    cluster.psql("CREATE TABLE IF NOT EXISTS walg_tick (at timestamptz); "
                 "INSERT INTO walg_tick VALUES (now())")
    segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if done >= segment:
            return segment
        time.sleep(0.1)
    raise AssertionError(f"segment {segment} was not archived within {timeout} s")
