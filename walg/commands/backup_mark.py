"""``wal-g backup-mark``: mark a backup permanent or impermanent."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Set or clear the permanent mark of ``args.backup_name`` (not implemented yet)."""
    raise not_implemented("backup-mark")
