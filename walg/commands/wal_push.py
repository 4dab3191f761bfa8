"""``wal-g wal-push``: archive one WAL file (PostgreSQL's archive_command)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Archive the WAL file at ``args.wal_path`` (not implemented yet)."""
    raise not_implemented("wal-push")
