"""Helpers shared by the end-to-end tests (importable, unlike conftest.py)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servers.postgres import PgCluster

WALG = str(Path(sys.executable).parent / "wal-g")


def scrubbed_env() -> dict[str, str]:
    """This process's environment without anything walg reads."""
    prefixes = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def archive_now(cluster: Any, timeout: float = 30.0) -> str:
    """Write a little WAL, switch segments, and wait until the archiver has stored the
    segment (archive_command runs asynchronously); returns that segment's name."""
    cluster.psql(
        "CREATE TABLE IF NOT EXISTS walg_tick (at timestamptz); "
        "INSERT INTO walg_tick VALUES (now())"
    )
    segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if done >= segment:
            return segment
        time.sleep(0.1)
    raise AssertionError(f"segment {segment} was not archived within {timeout} s")


def push(walg: Any, cluster: PgCluster, env: Mapping[str, str], *args: str) -> str:
    """``wal-g backup-push`` of ``cluster`` with ``env``; the new backup's name."""
    done = walg("backup-push", str(cluster.data_dir), *args, env={**cluster.env, **env})
    return str(done.stdout.strip().splitlines()[-1])


def wait_promoted(cluster: PgCluster, seconds: float = 120) -> None:
    """Wait until ``cluster`` has ended recovery and accepts writes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cluster.psql("SELECT pg_is_in_recovery()") == "f":
            return
        time.sleep(0.2)
    raise AssertionError(f"not promoted after {seconds} s:\n{cluster.log_tail()}")


def fetch_and_recover(
    factory: Any,
    walg: Any,
    env: Mapping[str, str],
    name: str,
    script: str,
    settings: Mapping[str, str] | None = None,
) -> PgCluster:
    """``wal-g backup-fetch NAME`` into a new directory, start it with ``SCRIPT wal-fetch``
    as restore_command (and ``settings``), and wait until recovery ended and it promoted."""
    base = PgCluster.make_base()
    walg("backup-fetch", str(base / "data"), name, env=env)
    (base / "data" / "recovery.signal").touch()
    cluster: PgCluster = factory(
        adopt=base / "data",
        base=base,
        archive_command=None,
        restore_command=f"{script} wal-fetch %f %p",
        settings=settings or {},
    )
    wait_promoted(cluster)
    return cluster
