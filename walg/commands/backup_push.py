"""``wal-g backup-push``: take a base backup of a running PostgreSQL cluster."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.commands import not_implemented

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Back up the cluster in ``args.pgdata`` (not implemented yet)."""
    raise not_implemented("backup-push")
