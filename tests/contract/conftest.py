"""The ``storage`` fixture: a fresh, empty storage of every backend in turn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from servers.gcs import gcs_emulator, make_gcs_storage  # noqa: F401
from servers.s3 import make_s3_storage, moto_server  # noqa: F401

from walg.storage import RetryPolicy, Storage
from walg.storage.file import FileStorage
from walg.storage.memory import MemoryStorage

FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)

BACKENDS = ["memory", "file", "s3", "gcs"]


def _make(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Storage:
    if kind == "memory":
        return MemoryStorage(FAST_RETRY)
    if kind == "file":
        return FileStorage(str(tmp_path / "store"), FAST_RETRY)
    maker: Callable[[], Storage] = request.getfixturevalue(f"make_{kind}_storage")
    return maker()


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An empty storage folder of each backend (S3 on moto, GCS on the emulator)."""
    return _make(request, request.param, tmp_path)
