"""``wal-g backup-mark NAME [--impermanent]``: mark a backup permanent or impermanent.

Marking permanent marks the backup's delta ancestors too; see :mod:`walg.backup.marking`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Set or clear the permanent mark of ``args.backup_name``; print what changed."""
    from walg.backup.marking import mark_backup
    from walg.config.widths import listing_threads
    from walg.storage import open_storage

    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    lines = mark_backup(
        storage,
        args.backup_name,
        permanent=not args.impermanent,
        workers=listing_threads(settings.concurrency),
    )
    for line in lines:
        print(line)
    return 0
