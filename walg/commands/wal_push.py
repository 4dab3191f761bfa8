"""``wal-g wal-push``: archive one WAL file (PostgreSQL's archive_command).

Silent on success (a line at DEBUG): logging loads structlog, which would cost more than
the rest of the call. Failures raise WalgError; ``walg.cli`` prints ERROR/HINT and exits
non-zero, and PostgreSQL keeps the file and tries again. SIGTERM stops the upload at its
next chunk and removes (aborts) the partial object: exit 143.

After a push it did itself, the call starts the cluster's background worker
(:mod:`walg.wal.background`), which then serves the next calls and uploads ready segments
ahead; with WALG_WAL_BACKGROUND=false, this call uploads ready segments ahead in threads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Archive the WAL file at ``args.wal_path``; 0 once it is stored."""
    from walg import interrupts
    from walg.wal import background
    from walg.wal.push import push_wal

    if getattr(args, "pg_ready_rename", False):
        from walg.logs import get_logger

        get_logger("walg").warning(
            "--pg-ready-rename has no effect: walg never renames PostgreSQL's .ready files; "
            "segments uploaded ahead are recorded in pg_wal/walg_data/walg_archive_status, "
            "so their own archive_command calls return at once"
        )
    environ = getattr(args, "environ", None)
    wal_dir = os.path.dirname(args.wal_path)
    worker = environ is not None and background.applies(settings, wal_dir, environ)
    with interrupts.stop_requests():
        result = push_wal(settings, args.wal_path, ahead=not worker)
    if worker and environ is not None:
        background.start_worker(settings, wal_dir, environ, args.config, archived=[result.name])
    return 0
