"""Fixtures shared by every test suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

# Prefixes of the variables walg reads; scrubbed from environments handed to walg in tests.
_WALG_ENV_PREFIXES = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "GCS_", "PG")


@pytest.fixture
def clean_env() -> dict[str, str]:
    """A copy of this process's environment without anything walg reads (for subprocesses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_WALG_ENV_PREFIXES)}


@pytest.fixture
def walg_env(tmp_path: Path) -> dict[str, str]:
    """The smallest environment that configures walg: file storage in a temporary folder."""
    storage = tmp_path / "storage"
    storage.mkdir()
    return {"WALG_FILE_PREFIX": str(storage)}


@pytest.fixture
def venv_bin() -> Path:
    """The bin directory of the interpreter running the tests (where ``wal-g`` is installed)."""
    return Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo any ``walg.logs.configure`` a test did, so tests do not leak log settings."""
    yield
    structlog.reset_defaults()
    from walg import logs

    logs.reset()


@pytest.fixture(autouse=True)
def _stop_wal_workers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop walg background workers a test started in its ``tmp_path`` (a wal-push or
    wal-fetch there starts one when the folder looks like pg_wal)."""
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if isinstance(tmp, Path):
        from servers.workers import stop_workers

        stop_workers(tmp)
