"""``wal-g delete MODE ... [--confirm]``: delete old backups and WAL by a retention rule.

Without ``--confirm`` only the plan is printed (see :mod:`walg.backup.deletion`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Plan, print, and with ``args.confirm`` carry out the deletion ``args.delete_mode``."""
    from walg.backup.deletion import DeleteRequest, delete
    from walg.config.widths import listing_threads
    from walg.storage import open_storage

    argument = getattr(args, "count", None)
    if argument is None:
        argument = getattr(args, "target", None)
    request = DeleteRequest(
        mode=args.delete_mode,
        modifier=args.modifier,
        argument=argument,
        confirm=args.confirm,
    )
    delete(open_storage(settings), request, workers=listing_threads(settings.concurrency))
    return 0
