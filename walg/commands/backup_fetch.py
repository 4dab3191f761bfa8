"""``wal-g backup-fetch``: restore a base backup into an empty directory."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Restore ``args.backup_name`` (or LATEST) into ``args.destination``."""
    from walg.backup.fetch import backup_fetch, parse_tablespace_remap
    from walg.backup.recovery import RecoveryOptions
    from walg.progress import ProgressReporter

    remap = parse_tablespace_remap(args.tablespace_map or [])
    recovery = RecoveryOptions(
        standby=args.standby,
        target_time=args.target_time,
        target_lsn=args.target_lsn,
        target_name=args.target_name,
        target_action=args.target_action,
    )
    reporter = ProgressReporter("extract", "backup-fetch")
    try:
        result = backup_fetch(
            settings,
            args.destination,
            args.backup_name,
            remap=remap,
            progress=reporter,
            recovery=recovery,
            restore_only=getattr(args, "restore_only", None),
        )
    finally:
        reporter.finish()
    print(result.name)
    return 0
