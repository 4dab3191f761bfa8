"""Helpers shared by the end-to-end tests (importable, unlike conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

WALG = str(Path(sys.executable).parent / "wal-g")


def scrubbed_env() -> dict[str, str]:
    """This process's environment without anything walg reads."""
    prefixes = ("WALG_", "WALE_", "AWS_", "GOOGLE_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
