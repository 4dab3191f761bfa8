"""``wal-g delete``: delete old backups and WAL by a retention rule."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Plan, and with ``--confirm`` do, the deletion ``args.delete_mode`` (not implemented yet)."""
    raise not_implemented("delete")
