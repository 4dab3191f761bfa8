"""``wal-g daemon SOCKET``: serve ``wal-push`` requests on a unix socket.

With ``WALG_DAEMON_SOCKET=SOCKET`` in archive_command's environment, ``wal-g wal-push %p``
hands the push to this process (see :mod:`walg.wal.daemon`) and falls back to a direct push
when it is not running. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve wal-push on ``args.socket`` until stopped; 0 after a clean stop."""
    from walg.wal.daemon import serve

    return serve(settings, args.socket)
