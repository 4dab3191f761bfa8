"""``wal-fetch``'s exit code, as PostgreSQL's restore_command reads it.

PostgreSQL (``RestoreArchivedFile``) reads restore_command's exit status so: 0, the file is
restored; 1 to 125, the file is "not available"; above 125 or death by a signal, a fatal
error that aborts recovery (the server shuts down). In archive recovery "not available"
ends recovery there: the server promotes, and WAL after that point is lost from its
history for good. So every wal-fetch failure that does not prove the file is absent must
be above 125, or a damaged object, an outage, a full disk or a typo in the settings would
silently cut recovery short:

- 0: restored; 74: not in the archive (recovery ends normally there);
- anything else walg would exit with (1: storage, integrity, decryption, local file
  errors, internal errors; 2: settings and usage errors) becomes
  :data:`~walg.errors.EX_ABORT_RECOVERY` (200), with a WARNING line saying why;
- codes already above 125 (130 Ctrl-C, 143 SIGTERM) stay as they are.

A standby (``standby.signal``, or ``standby_mode = on`` in a pre-12 ``recovery.conf``, in
the data directory) keeps walg's own code. A standby never ends recovery because
restore_command failed: it tries streaming replication, then restore_command again every
``wal_retrieve_retry_interval``, and is promoted only when told to. An abort would shut the
whole standby down (no read queries, no streaming) for what may be a passing storage
outage, or a damaged object that streaming from the primary can still replace; retrying
costs nothing and the ERROR line lands in the server log at every attempt.

The data directory is where PostgreSQL runs restore_command (this process's working
directory) or, for an absolute ``%p``, the parent of DEST's directory. This module imports
only ``os`` and ``sys``: the daemon client applies it too.
"""

from __future__ import annotations

import os

from walg.errors import EX_ABORT_RECOVERY, EX_NOT_FOUND

TYPE_CHECKING = False  # not typing's: this runs on the daemon client's fast path
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["fetch_destination", "is_standby", "restore_command_exit", "restore_exit_code"]

_STANDBY_MODE = r"^\s*standby_mode\s*=\s*'?(on|true|yes|1)'?\s*(#.*)?$"


def restore_exit_code(code: int, standby: bool) -> int:
    """The exit code wal-fetch returns for what would otherwise be ``code`` (pure)."""
    if code in (0, EX_NOT_FOUND) or code > 125 or standby:
        return code
    return EX_ABORT_RECOVERY


def fetch_destination(argv: Sequence[str]) -> str | None:
    """DEST if ``argv`` runs ``wal-fetch`` ("" when DEST is missing), else None.

    Options before the command are skipped (``--config FILE`` takes a value)."""
    words = list(argv)
    while words and words[0].startswith("-"):
        option = words.pop(0)
        if option == "--config" and words:
            words.pop(0)
    if not words or words[0] != "wal-fetch":
        return None
    plain = [w for w in words[1:] if not w.startswith("-")]
    return plain[1] if len(plain) >= 2 else ""


def is_standby(data_dir: str) -> bool:
    """Whether the cluster in ``data_dir`` is configured as a standby."""
    if os.path.exists(os.path.join(data_dir, "standby.signal")):
        return True
    try:
        with open(os.path.join(data_dir, "recovery.conf"), encoding="utf-8",
                  errors="replace") as conf:  # fmt: skip
            text = conf.read()
    except OSError:
        return False
    import re  # only for PostgreSQL < 12

    return re.search(_STANDBY_MODE, text, re.IGNORECASE | re.MULTILINE) is not None


def restore_command_exit(argv: Sequence[str], code: int) -> int:
    """``code`` as wal-fetch must return it when ``argv`` runs wal-fetch (see the module
    docstring); a WARNING line on stderr says why when it changes. Other commands: ``code``."""
    destination = fetch_destination(argv)
    if destination is None:
        return code
    data_dirs = ["."]  # PostgreSQL runs restore_command in the data directory
    if destination:
        data_dirs.append(os.path.dirname(os.path.dirname(os.path.abspath(destination))))
    final = restore_exit_code(code, any(is_standby(d) for d in data_dirs))
    if final != code:
        from walg import logs  # its format was set when the error above was written

        logs.write_event(
            "warning",
            f"wal-fetch exits with {final}, not {code}, so that PostgreSQL aborts "
            "recovery here instead of ending it early without the WAL that follows; fix the "
            "problem above and start the server again",
        )
    return final
