"""``wal-g wal-show [--detailed-json] [--without-backups]``: the timelines in the archive.

Output is WAL-G's (:mod:`walg.backup.wal_show`, :mod:`walg.backup.wal_report`); the exit
code is 0 whatever the timelines' status (as WAL-G), non-zero only when the archive could
not be read. It needs no database connection; segments are taken to be 16 MiB, PostgreSQL's
default (WAL-G's too, unless WALG_PG_WAL_SIZE says otherwise).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the timelines in storage (with their backups unless --without-backups)."""
    from walg.backup import wal_report
    from walg.backup.wal_show import show
    from walg.config.widths import listing_threads
    from walg.postgres.wal import DEFAULT_SEGMENT_SIZE
    from walg.storage import open_storage
    from walg.wal.history import history_reader

    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    read, close = history_reader(storage, settings)
    try:
        infos, backups = show(
            storage,
            read,
            with_backups=not args.without_backups,
            segment_size=DEFAULT_SEGMENT_SIZE,
            workers=listing_threads(settings.concurrency),
        )
    finally:
        close()
    render = wal_report.show_json if args.detailed_json else wal_report.show_text
    sys.stdout.write(render(infos, backups, DEFAULT_SEGMENT_SIZE))
    sys.stdout.flush()
    return 0
