"""``wal-g backup-fetch``: restore a base backup into an empty directory."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Restore backup ``args.backup_name`` into ``args.destination`` (not implemented yet)."""
    raise not_implemented("backup-fetch")
