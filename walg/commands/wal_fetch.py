"""``wal-g wal-fetch``: fetch one WAL file (PostgreSQL's restore_command)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch WAL file ``args.wal_name`` to ``args.destination`` (not implemented yet)."""
    raise not_implemented("wal-fetch")
