"""``wal-g backup-list``: list the backups in storage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the backups in storage (not implemented yet)."""
    raise not_implemented("backup-list")
