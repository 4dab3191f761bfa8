"""End-to-end fixtures: real PostgreSQL clusters and the real ``wal-g`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from servers.postgres import PgCluster, pg_cluster, pg_cluster_factory  # noqa: F401

WALG = str(Path(sys.executable).parent / "wal-g")

WalgRunner = Callable[..., subprocess.CompletedProcess[str]]


def scrubbed_env() -> dict[str, str]:
    """This process's environment without anything walg reads."""
    prefixes = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@pytest.fixture
def walg() -> WalgRunner:
    """Run the installed ``wal-g`` with the given environment; returns the completed run."""

    def run(*args: str, env: Mapping[str, str], check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [WALG, *args], env={**scrubbed_env(), **env}, capture_output=True, text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"wal-g {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    return run
