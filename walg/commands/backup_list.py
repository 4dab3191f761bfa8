"""``wal-g backup-list [--detail] [--json] [--pretty]``: list the backups in storage.

The list goes to stdout (formats in :mod:`walg.backup.listing`). An empty storage is not an
error, as in WAL-G: "No backups found" is an INFO line on stderr (in the log's format), the
exit code is 0, and ``--json`` still prints ``[]`` so that scripts always get valid JSON.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from walg import logs
from walg.backup import catalog, listing
from walg.config.widths import listing_threads
from walg.storage import open_storage

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the backups in the configured storage, oldest first; return 0."""
    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    backups = catalog.list_backups(
        storage, with_metadata=args.detail, workers=listing_threads(settings.concurrency)
    )
    if not backups:
        logs.write_event("info", listing.NO_BACKUPS)  # WAL-G: an INFO line
    text = listing.render(backups, detail=args.detail, as_json=args.json, pretty=args.pretty)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0
