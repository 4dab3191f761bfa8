"""``wal-g backup-push``: take a base backup of a running PostgreSQL cluster."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from walg.errors import NotImplementedYet

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Back up the cluster in ``args.pgdata``; print the backup's name."""
    from walg.backup.push import backup_push
    from walg.progress import ProgressReporter

    if args.delta_from_name or (settings.backup.delta_max_steps > 0 and not args.full):
        raise NotImplementedYet(
            "delta backups are not built yet",
            hint="unset WALG_DELTA_MAX_STEPS (or pass --full) to take a full backup",
        )
    reporter = ProgressReporter("tar", "backup-push")
    try:
        result = backup_push(settings, args.pgdata, permanent=args.permanent, progress=reporter)
    finally:
        reporter.finish()
    print(result.name)
    return 0
