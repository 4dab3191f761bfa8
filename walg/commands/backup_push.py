"""``wal-g backup-push``: take a base backup of a running PostgreSQL cluster."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]

#: WAL-G flags that change nothing walg stores: what each would do, for the warning.
_IGNORED = {
    "store_all_corrupt": "--store-all-corrupt has no effect: walg records the first 10 "
    "corrupt blocks of each file (WAL-G's default)",
    "rating_composer": "--rating-composer has no effect: walg has one tar composer",
    "database_composer": "--database-composer has no effect: walg has one tar composer",
    "copy_composer": "--copy-composer: walg has one tar composer; taking a full backup as "
    "WAL-G's copy composer does",
}


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Back up the cluster in ``args.pgdata`` (default: PGDATA); print the backup's name."""
    from walg.backup.push import backup_push
    from walg.progress import ProgressReporter

    pgdata = _data_directory(args, settings)
    full, delta_from_name = _delta_choice(args, settings)
    settings = _with_user_data(args, settings)
    reporter = ProgressReporter("tar", "backup-push")
    try:
        result = backup_push(
            settings,
            pgdata,
            permanent=args.permanent,
            full=full,
            delta_from_name=delta_from_name,
            verify=args.verify,
            progress=reporter,
        )
    except BaseException:
        reporter.finish(ok=False)  # the bar stays where it stopped
        raise
    reporter.finish()  # at 100%
    print(result.name)
    return 0


def _data_directory(args: argparse.Namespace, settings: Settings) -> str:
    """PGDATA from the command line, else the PGDATA setting (environment or config file)."""
    from walg.errors import ConfigError

    pgdata = getattr(args, "pgdata", None) or settings.postgres.data_dir
    if not pgdata:
        raise ConfigError(
            "no data directory: give it as `wal-g backup-push PGDATA`, or set PGDATA",
            hint="e.g. wal-g backup-push /var/lib/postgresql/16/main (walg has no "
            "remote backup over the replication protocol, WAL-G's backup-push without one)",
        )
    return pgdata


def _delta_choice(args: argparse.Namespace, settings: Settings) -> tuple[bool, str | None]:
    """``(full, delta_from_name)`` from the flags, as WAL-G combines them."""
    from walg.errors import ConfigError
    from walg.logs import get_logger

    log = get_logger()
    full, name = bool(args.full), args.delta_from_name
    by_user_data = getattr(args, "delta_from_user_data", None)
    if not full:  # WALG_DELTA_FROM_NAME/_USER_DATA fill in each flag not given, as WAL-G
        name = name or settings.backup.delta_from_name
        by_user_data = by_user_data or settings.backup.delta_from_user_data
    if name and by_user_data:  # WAL-G: "only one delta target should be specified"
        raise ConfigError(
            "--delta-from-name and --delta-from-user-data both name a delta's base",
            hint="give only one of them",
        )
    for flag, line in _IGNORED.items():
        if getattr(args, flag, False):
            log.warning(line)
    full = full or bool(getattr(args, "copy_composer", False))
    if getattr(args, "without_files_metadata", False):
        if name or by_user_data:
            raise ConfigError(
                "--without-files-metadata cannot be used with --delta-from-name or "
                "--delta-from-user-data",
                hint="drop one of them (WAL-G refuses the combination too)",
            )
        log.warning(
            "--without-files-metadata: files metadata are still written (walg's restore "
            "checks and later deltas need them); taking a full backup, as WAL-G does"
        )
        full = True
    check_target_storage(args)
    if full and (name or by_user_data):
        flag = "--delta-from-name" if name else "--delta-from-user-data"
        raise ConfigError(
            f"--full and {flag} contradict each other",
            hint=f"pass --full for a full backup, or {flag} for a delta",
        )
    if by_user_data:
        name = backup_by_user_data(settings, by_user_data)
    return full, name


def _with_user_data(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with --add-user-data as WALG_SENTINEL_USER_DATA (the flag wins)."""
    raw = getattr(args, "add_user_data", None)
    if not raw:
        return settings
    from dataclasses import replace

    return replace(settings, backup=replace(settings.backup, sentinel_user_data_text=raw))


def backup_by_user_data(settings: Settings, raw: str) -> str:
    """The name of the one backup whose UserData is ``raw`` (JSON, else that text)."""
    from walg.backup.catalog import find_backup_by_user_data
    from walg.config.parse import parse_json_or_text
    from walg.config.widths import listing_threads
    from walg.storage import open_storage

    workers = listing_threads(settings.concurrency)
    storage = open_storage(settings)
    found = find_backup_by_user_data(storage, parse_json_or_text(raw), workers=workers)
    name: str = found.name
    return name


def check_target_storage(args: argparse.Namespace) -> None:
    """WAL-G's --target-storage picks one of its failover storages; walg has only the
    primary one, which WAL-G calls "default"."""
    name = getattr(args, "target_storage", None)
    if name and name != "default":
        from walg.errors import ConfigError

        raise ConfigError(
            f"--target-storage {name}: walg has no failover storages, only the primary one",
            hint="drop --target-storage (or pass --target-storage default)",
        )
