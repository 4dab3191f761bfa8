"""``wal-g wal-push``: archive one WAL file (PostgreSQL's archive_command).

Silent on success (a line at DEBUG): logging loads structlog, which would cost more than
the rest of the call. Failures raise WalgError; ``walg.cli`` prints ERROR/HINT and exits
non-zero, and PostgreSQL keeps the file and tries again. SIGTERM stops the upload at its
next chunk and removes (aborts) the partial object: exit 143.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Archive the WAL file at ``args.wal_path``; 0 once it is stored."""
    from walg import interrupts
    from walg.wal.push import push_wal

    with interrupts.stop_requests():
        push_wal(settings, args.wal_path)
    return 0
