"""``wal-g backup-push``: take a base backup of a running PostgreSQL cluster."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Back up the cluster in ``args.pgdata``; print the backup's name."""
    from walg.backup.push import backup_push
    from walg.errors import ConfigError
    from walg.progress import ProgressReporter

    if args.full and args.delta_from_name:
        raise ConfigError(
            "--full and --delta-from-name contradict each other",
            hint="pass --full for a full backup, or --delta-from-name NAME for a delta",
        )

    reporter = ProgressReporter("tar", "backup-push")
    try:
        result = backup_push(
            settings,
            args.pgdata,
            permanent=args.permanent,
            full=args.full,
            delta_from_name=args.delta_from_name,
            verify=args.verify,
            progress=reporter,
        )
    finally:
        reporter.finish()
    print(result.name)
    return 0
