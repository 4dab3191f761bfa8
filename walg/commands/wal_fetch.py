"""``wal-g wal-fetch``: fetch one WAL file (PostgreSQL's restore_command).

Exit 0 when the file is in place at DEST, 74 (ObjectNotFound) when the archive does not
have it (recovery then ends normally), 1 with a message for any other failure. Segments are
served from the prefetch cache when they were fetched ahead (see :mod:`walg.wal.prefetch`).

PostgreSQL sends SIGTERM to restore_command on a fast shutdown and expects it to die of
that signal. So a SIGTERM first unwinds the fetch (removing its temporary file), and the
process then kills itself with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from walg.wal.prefetch import Spawner, fetch_with_prefetch

if TYPE_CHECKING:
    import argparse

    from walg.config import Settings

__all__ = ["run"]


class _Terminated(BaseException):
    """SIGTERM arrived: unwind (cleaning up as for Ctrl-C), then die of the signal."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch WAL file ``args.wal_name`` to ``args.destination``."""
    spawn = _worker_spawner(args, settings)
    if threading.current_thread() is not threading.main_thread():
        fetch_with_prefetch(
            settings, args.wal_name, args.destination, not args.no_prefetch, spawn=spawn
        )
        return 0
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        fetch_with_prefetch(
            settings, args.wal_name, args.destination, not args.no_prefetch, spawn=spawn
        )
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # not reached: the default action of SIGTERM ends the process
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _worker_spawner(args: argparse.Namespace, settings: Settings) -> Spawner | None:
    """Prefetches run in the cluster's background worker, which this call starts, when one
    applies (:mod:`walg.wal.background`); else in a detached process of their own."""
    environ = getattr(args, "environ", None)
    wal_dir = os.path.dirname(os.path.abspath(args.destination))
    from walg.wal import background

    if environ is None or not background.applies(settings, wal_dir, environ):
        return None
    return background.spawner(settings, wal_dir, environ, args.config)
