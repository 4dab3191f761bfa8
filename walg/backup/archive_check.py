"""Exit 0 means restorable: a backup is committed only once the WAL it needs is archived.

A base backup restores only with the WAL from its start to its stop. backup-push therefore:

1. calls pg_backup_stop with ``wait_for_archive`` (WAL-G calls ``pg_backup_stop()``, whose
   default is true), bounded by WALG_STOP_BACKUP_TIMEOUT set as the call's statement_timeout
   (WAL-G's way; unset or 0 = no limit on a primary, WAL-G's default; on a standby see 3).
   PostgreSQL waits only where it archives: on a primary with archive_mode on or always
   (after switching to a new segment, so the stop segment is finished), on a standby only
   with archive_mode always. When the timeout expires the server cancels the call, which
   ends the backup: walg exits non-zero, writes no sentinel, and names the stop segment and
   the archiver's last failure.
   On a primary that archives (PostgreSQL 10+), walg makes that same wait itself
   (:func:`wait_for_archiver`): PostgreSQL checks the archive status once a second, so
   its wait lasts a second even when archive_command takes milliseconds. walg stops the
   backup without waiting, then checks the very files PostgreSQL checks (``XLogArchiveIsBusy``
   on the stop segment and the backup history file, in ``pg_wal/archive_status``) every
   few milliseconds, bounded by the same timeout; it falls back to PostgreSQL's wait when
   it cannot read that folder.
2. checks that the stop segment (the one holding the last byte before the stop LSN, the one
   PostgreSQL waits for) is in this storage's ``wal_005/``, under any extension walg or
   WAL-G reads (WAL-G's wal-push may be the archive_command; with zstd, gzip or lzo a
   warning says that only WAL-G can restore that WAL).
   WAL-G does not check this; pgBackRest does (``archive-check``, on by default). Without
   it, an archive_command pushing to another prefix, or archive_mode=off, gives a listed
   backup that cannot be restored from this storage. WALG_ARCHIVE_CHECK=false skips the
   check (WAL archived elsewhere on purpose), and a warning says what exit 0 then means.
3. on a standby, waits for that segment to appear in this storage (bounded by the same
   timeout). A standby cannot finish a segment: the stop segment reaches the archive when
   the primary finishes it (archive_timeout, pg_switch_wal()) and archives it, or this
   standby does with archive_mode always. WAL-G returns at once there; pgBackRest (which
   stops the backup on the primary) waits for the segment in its repository, up to
   archive-timeout (60 s by default). walg waits like pgBackRest, and never without limit:
   with WALG_STOP_BACKUP_TIMEOUT unset (0) a standby waits STANDBY_TIMEOUT. A quiet primary
   with archive_timeout=0 may never finish the segment, and an unbounded wait would pile up
   cron runs, each holding a PostgreSQL session.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from enum import Enum
from typing import Final

from walg.config.settings import BackupSettings
from walg.errors import QueryCancelled, WalNotArchived
from walg.format.layout import WAL, WalKey, wal_keys
from walg.logs import get_logger
from walg.postgres.archiver import ARCHIVING_MODES, ArchiverStatus, archive_mode, archiver_status
from walg.postgres.connection import BackupStart, BackupStop, PgConnection
from walg.postgres.label import parse_stop_lsn
from walg.postgres.wal import backup_history_file_name, segment_name, segment_number
from walg.storage import Storage

__all__ = [
    "STANDBY_TIMEOUT",
    "Plan",
    "archived",
    "effective_timeout",
    "find_segment",
    "missing_error",
    "plan",
    "stop_and_check",
    "stop_segment",
    "timeout_error",
    "unchecked_warning",
    "unreadable_warning",
    "wait_for_archiver",
    "wait_for_segment",
]

_log = get_logger("walg")
_POLL_FIRST: Final = 0.5
_POLL_MAX: Final = 5.0
_ARCHIVER_POLL_FIRST: Final = 0.005
_ARCHIVER_POLL_MAX: Final = 0.5
_REPORT_EVERY: Final = 60.0
_CHECK_OFF: Final = "or set WALG_ARCHIVE_CHECK=false if WAL is archived elsewhere on purpose"
STANDBY_TIMEOUT: Final = 300.0
"""How long a standby waits for its stop segment when WALG_STOP_BACKUP_TIMEOUT is unset (0).

Five minutes covers a primary whose archive_timeout is up to a few minutes (PostgreSQL's
documentation calls a minute or so reasonable) plus a slow archive_command, five times
pgBackRest's archive-timeout default (60 s); it is short enough that a backup-push every
15 minutes or more cannot pile up behind a primary that never finishes the segment."""
_SWITCH_ON_PRIMARY: Final = (
    "run SELECT pg_switch_wal() on the primary or set archive_timeout there (it finishes "
    "the segment), or raise WALG_STOP_BACKUP_TIMEOUT"
)


class Plan(Enum):
    """What backup-push does about the stop segment once pg_backup_stop returned."""

    LOOK = "look"  # a primary: PostgreSQL waited (or does not archive); it is there, or never
    WAIT = "wait"  # a standby: it arrives when the primary (or this standby) archives it
    TRUST = "trust"  # WALG_ARCHIVE_CHECK=false: not checked


def plan(in_recovery: bool, archive_check: bool) -> Plan:
    """The rule above, as a function."""
    if not archive_check:
        return Plan.TRUST
    return Plan.WAIT if in_recovery else Plan.LOOK


def effective_timeout(setting: float, in_recovery: bool) -> float:
    """WALG_STOP_BACKUP_TIMEOUT as applied: 0 (unset) waits without limit on a primary, as
    WAL-G does, but STANDBY_TIMEOUT on a standby, where the wait ends only when the primary
    finishes the segment."""
    if setting > 0:
        return setting
    return STANDBY_TIMEOUT if in_recovery else 0.0


def stop_segment(timeline: int, stop_lsn: int, segment_size: int) -> str:
    """The segment holding the byte before ``stop_lsn`` (``XLByteToPrevSeg``): the last one
    the backup needs, the one pg_backup_stop waits for."""
    return segment_name(timeline, segment_number(max(stop_lsn - 1, 0), segment_size), segment_size)


def _seconds(timeout: float) -> str:
    return f"{timeout:g}s"


def timeout_error(
    segment: str | None, timeout: float, status: ArchiverStatus, in_recovery: bool = False
) -> WalNotArchived:
    """pg_backup_stop did not see the backup's WAL archived within ``timeout``."""
    what = f"WAL segment {segment}" if segment else "the last WAL segment"
    hint = ("fix archive_command (its errors are in the server log), or raise "
            "WALG_STOP_BACKUP_TIMEOUT if archiving is only slow; the backup was not committed")
    if in_recovery:
        hint = (f"this is a standby: the segment is archived once the primary finishes it: "
                f"{_SWITCH_ON_PRIMARY}; the backup was not committed")
    return WalNotArchived(
        f"{what}, the last one this backup needs, was not archived within "
        f"{_seconds(timeout)} (WALG_STOP_BACKUP_TIMEOUT): {status.describe()}",
        hint=hint,
    )


def missing_error(
    segment: str, in_recovery: bool, mode: str, where: str, timeout: float
) -> WalNotArchived:
    """The stop segment is not in this storage (``where``) although it had to be."""
    needs = f"WAL segment {segment}, the last one this backup needs,"
    folder = f"{where.rstrip('/')}/{WAL}/"
    if in_recovery:
        return WalNotArchived(
            f"{needs} did not reach {folder} within {_seconds(timeout)} (this is a standby: "
            "the segment is archived once the primary finishes it)",
            hint=f"{_SWITCH_ON_PRIMARY} (unset, a standby waits {_seconds(STANDBY_TIMEOUT)}); "
            f"check that the primary archives to this storage, {_CHECK_OFF}",
        )
    if mode not in ARCHIVING_MODES:
        return WalNotArchived(
            f"{needs} is not archived: archive_mode is {mode}, so the backup could not be "
            "restored",
            hint="set archive_mode=on and archive_command='wal-g wal-push %p' (then restart "
            f"PostgreSQL), {_CHECK_OFF} (copied by other means)",
        )
    return WalNotArchived(
        f"{needs} was archived by archive_command but is not in {folder}",
        hint="make archive_command 'wal-g wal-push %p' with the same storage prefix as "
        f"backup-push, {_CHECK_OFF}",
    )


def unchecked_warning(segment: str, in_recovery: bool, mode: str) -> str:
    """What exit 0 promises when WALG_ARCHIVE_CHECK=false (logged as a warning)."""
    if in_recovery:
        return (
            f"WAL not checked (WALG_ARCHIVE_CHECK=false): restoring this backup needs the "
            f"segments up to {segment} from the archive the primary fills"
        )
    if mode not in ARCHIVING_MODES:
        return (
            f"archive_mode is {mode}: the WAL this backup needs (up to {segment}) is not "
            "archived; it restores only with those segments copied by other means"
        )
    return (
        f"WAL not checked in this storage (WALG_ARCHIVE_CHECK=false): PostgreSQL archived "
        f"the segments up to {segment} with archive_command; restoring needs that archive"
    )


def unreadable_warning(segment: str, key: WalKey) -> str:
    """The stop segment is archived with a compression only WAL-G reads (logged as a
    warning): the backup is restorable, but not by walg alone."""
    return (
        f"WAL segment {segment} is archived as {key.key} ({key.method}, written by WAL-G's "
        "wal-push): walg cannot read it, so this backup's WAL must be restored with WAL-G's "
        "wal-fetch (or archive with WALG_COMPRESSION_METHOD lz4, lzma, brotli or none)"
    )


def find_segment(storage: Storage, segment: str) -> WalKey | None:
    """The key under which ``segment`` is stored (any compression walg or WAL-G reads, one
    walg reads preferred), or None."""
    wanted = {k.key: k for k in wal_keys(segment, "lz4")}
    found = [wanted[info.name] for info in storage.list_objects(f"{WAL}/{segment}")
             if info.name in wanted]
    return min(found, key=lambda k: not k.readable, default=None)


def wait_for_segment(
    storage: Storage,
    segment: str,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WalKey | None:
    """Poll until ``segment`` is stored (its key) or ``timeout`` seconds passed (None);
    ``timeout`` 0 waits without limit. Logs what it waits for, then once a minute."""
    start = clock()
    reported = start - _REPORT_EVERY
    pause = _POLL_FIRST
    while (key := find_segment(storage, segment)) is None:
        now = clock()
        if timeout > 0 and now - start >= timeout:
            return None
        if now - reported >= _REPORT_EVERY:
            _log.info("waiting for the backup's stop segment to reach the archive",
                      segment=segment, waited=round(now - start))
            reported = now
        step = pause if timeout <= 0 else min(pause, max(0.0, start + timeout - now))
        sleep(step)
        pause = min(pause * 2, _POLL_MAX)
    return key


def archived(data_dir: str, name: str) -> bool:
    """Whether ``name`` (a WAL segment or a backup history file) is archived, as PostgreSQL's
    ``XLogArchiveIsBusy`` decides: a ``.done`` status file, else no ``.ready`` one and the
    file gone from pg_wal (archived, then removed). An unreadable status raises OSError."""
    wal = os.path.join(data_dir, "pg_wal")
    status = os.path.join(wal, "archive_status", name)
    if _present(status + ".done"):
        return True
    if _present(status + ".ready"):
        return False
    return _present(status + ".done") or not _present(os.path.join(wal, name))  # raced


def _present(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return False
        raise
    return True


def wait_for_archiver(
    data_dir: str,
    names: list[str],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll until every one of ``names`` is :func:`archived` (True) or ``timeout`` seconds
    passed (False); ``timeout`` 0 waits without limit. Logs once a minute while it waits."""
    start = clock()
    reported = start
    pause = _ARCHIVER_POLL_FIRST
    while not all(archived(data_dir, name) for name in names):
        now = clock()
        if timeout > 0 and now - start >= timeout:
            return False
        if now - reported >= _REPORT_EVERY:
            _log.info("waiting for archive_command to archive the backup's WAL",
                      files=names, waited=round(now - start))
            reported = now
        step = pause if timeout <= 0 else min(pause, max(0.0, start + timeout - now))
        sleep(step)
        pause = min(pause * 2, _ARCHIVER_POLL_MAX)
    return True


def _waits_itself(start: BackupStart, mode: str, data_dir: str) -> bool:
    """Whether walg makes PostgreSQL's archive wait itself (see the module doc, 1.)."""
    if start.in_recovery or mode not in ARCHIVING_MODES or start.server_version_num < 100000:
        return False
    try:
        os.listdir(os.path.join(data_dir, "pg_wal", "archive_status"))
    except OSError as err:
        _log.debug("archive status not readable: PostgreSQL waits", error=str(err))
        return False
    return True


def stop_and_check(
    pg: PgConnection, storage: Storage, backup: BackupSettings, start: BackupStart, data_dir: str
) -> BackupStop:
    """pg_backup_stop, waiting for archiving, then the stop segment checked in ``storage``
    (or waited for, on a standby); WalNotArchived when the WAL is not there."""
    timeout = effective_timeout(backup.stop_backup_timeout, start.in_recovery)
    began = time.monotonic()
    mode = archive_mode(pg)
    itself = _waits_itself(start, mode, data_dir)
    try:
        stop = pg.stop_backup(wait_for_archive=not itself, timeout=timeout)
    except QueryCancelled:
        if timeout <= 0:
            raise  # cancelled by someone else (pg_cancel_backend)
        segment = _segment_from_history(data_dir, start)
        raise timeout_error(segment, timeout, archiver_status(pg), start.in_recovery) from None
    segment = stop_segment(start.timeline, stop.lsn, start.segment_size)
    if itself:
        history = backup_history_file_name(start.timeline, start.lsn, start.segment_size)
        left = max(timeout - (time.monotonic() - began), 0.001) if timeout > 0 else 0.0
        if not wait_for_archiver(data_dir, [segment, history], left):
            raise timeout_error(segment, timeout, archiver_status(pg))
    action = plan(start.in_recovery, backup.archive_check)
    if action is Plan.TRUST:
        _log.warning(unchecked_warning(segment, start.in_recovery, mode))
        return stop
    if action is Plan.WAIT:
        left = max(timeout - (time.monotonic() - began), 0.001)  # > 0: a standby has a limit
        key = wait_for_segment(storage, segment, left)
    else:
        key = find_segment(storage, segment)
    if key is None:
        raise missing_error(segment, start.in_recovery, mode, storage.url, timeout)
    if not key.readable:
        _log.warning(unreadable_warning(segment, key))
    _log.info("the backup's WAL is archived", stop_segment=segment, key=key.key)
    return stop


def _segment_from_history(data_dir: str, start: BackupStart) -> str | None:
    """The stop segment, from the backup history file pg_backup_stop wrote in pg_wal before
    it began to wait (a primary only; None when it cannot be read)."""
    name = backup_history_file_name(start.timeline, start.lsn, start.segment_size)
    try:
        with open(os.path.join(data_dir, "pg_wal", name), encoding="utf-8") as f:
            lsn = parse_stop_lsn(f.read())
    except (OSError, UnicodeDecodeError):
        return None
    return None if lsn is None else stop_segment(start.timeline, lsn, start.segment_size)
