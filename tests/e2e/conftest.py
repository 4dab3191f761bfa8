"""End-to-end fixtures: real PostgreSQL clusters and the real ``wal-g`` command."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping

import pytest
from conftest_helpers import WALG, scrubbed_env  # type: ignore[import-not-found]
from servers.postgres import PgCluster, pg_cluster, pg_cluster_factory  # noqa: F401

WalgRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def walg() -> WalgRunner:
    """Run the installed ``wal-g`` with the given environment; returns the completed run.

    WALG_ARCHIVE_CHECK defaults to false here: test clusters archive to /bin/true or with
    cp unless a test sets archive_command to wal-g, so their backups' WAL is not in the
    storage. Tests of that check (test_archive_wait.py) set it themselves."""

    def run(*args: str, env: Mapping[str, str], check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [WALG, *args], env={**scrubbed_env(), "WALG_ARCHIVE_CHECK": "false", **env},
            capture_output=True, text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"wal-g {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    return run
