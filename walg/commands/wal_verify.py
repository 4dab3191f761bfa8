"""``wal-g wal-verify integrity|timeline ... [--json] [--exit-code]``: check the WAL archive.

Checks and output are WAL-G's (:mod:`walg.backup.wal_verify`, :mod:`walg.backup.wal_report`).
As in WAL-G, the exit code says only whether the checks could run: 0 even on FAILURE, so
that exporters reading ``--json`` (WAL-G's exporter treats a non-zero exit as a failed
scrape) keep working. walg's ``--exit-code`` makes a FAILURE of any check exit
:data:`EX_CHECK_FAILED` (3) instead, for cron and monitoring scripts; WARNING (segments
probably still being archived) stays 0. Errors (storage, connection, settings) exit 1 or 2
as usual.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.backup.wal_verify import Position
    from walg.config import Settings

__all__ = ["EX_CHECK_FAILED", "run"]

EX_CHECK_FAILED = 3
"""Exit code of ``--exit-code`` when a check reports FAILURE."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the requested checks, print their results; see the module docstring for exits."""
    from walg.backup import wal_report
    from walg.backup.wal_verify import run_checks
    from walg.config.widths import listing_threads
    from walg.format.timelines import CheckStatus
    from walg.storage import open_storage
    from walg.wal.history import history_reader

    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    position = _position(args, settings)
    read, close = history_reader(storage, settings)
    try:
        results = run_checks(
            storage,
            args.checks,
            position,
            read,
            uploading=settings.concurrency.upload,
            delayed=settings.wal.integrity_max_delayed,
            backup_name=args.backup_name,
            workers=listing_threads(settings.concurrency),
        )
    finally:
        close()
    render = wal_report.verify_json if args.json else wal_report.verify_text
    sys.stdout.write(render(results))
    sys.stdout.flush()
    failed = any(r.status is CheckStatus.FAILURE for r in results.values())
    return EX_CHECK_FAILED if args.exit_code and failed else 0


def _position(args: argparse.Namespace, settings: Settings) -> Position:
    """The cluster's timeline and WAL position: from --timeline/--lsn, else the server."""
    from walg.backup.wal_verify import Position
    from walg.errors import ConfigError
    from walg.postgres.wal import DEFAULT_SEGMENT_SIZE, parse_lsn

    if (args.timeline is None) != (args.lsn is None):
        raise ConfigError(
            "--timeline and --lsn work only together",
            hint="give both (e.g. --timeline 2 --lsn 0/5000000), or neither to ask the server",
        )
    if args.lsn is not None:
        try:
            lsn = parse_lsn(args.lsn)
        except ValueError as err:
            raise ConfigError(str(err), hint="an LSN looks like 16/B374D848") from None
        return Position(args.timeline, lsn, DEFAULT_SEGMENT_SIZE)
    from walg.postgres.connection import connect

    with connect(settings.postgres) as conn:
        return Position(conn.current_timeline(), conn.current_lsn(), conn.wal_segment_size())
