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

    name = _backup_name(args, settings)
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
            name,
            remap=remap,
            progress=reporter,
            recovery=recovery,
            restore_only=getattr(args, "restore_only", None),
        )
    finally:
        reporter.finish()
    print(result.name)
    return 0


def _backup_name(args: argparse.Namespace, settings: Settings) -> str:
    """NAME or LATEST, or the backup --target-user-data names (one of the two, as WAL-G).

    --reverse-unpack and --skip-redundant-tars need nothing: walg always writes each file
    once, from the newest backup of the chain that holds it, and reads only the tars that
    hold files it needs (see walg.format.chain.plan_restore)."""
    from walg.commands.backup_push import backup_by_user_data, check_target_storage
    from walg.errors import ConfigError

    check_target_storage(args)
    user_data = getattr(args, "target_user_data", None)
    from_setting = not user_data and settings.backup.fetch_target_user_data is not None
    if from_setting:  # WAL-G: the setting is the flag's default
        user_data = settings.backup.fetch_target_user_data
    if args.backup_name and user_data:
        where = "WALG_FETCH_TARGET_USER_DATA" if from_setting else "--target-user-data"
        raise ConfigError(
            f"both a backup name and {where} were given",
            hint=f"give the backup's NAME (or LATEST), or {where}, not both (as WAL-G)",
        )
    if args.backup_name:
        name: str = args.backup_name
        return name
    if not user_data:
        raise ConfigError(
            "no backup to restore: give its NAME (or LATEST), or --target-user-data JSON",
            hint="e.g. wal-g backup-fetch /var/lib/postgresql/16/main LATEST",
        )
    return backup_by_user_data(settings, user_data)
