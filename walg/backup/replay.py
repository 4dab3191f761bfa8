"""backup-verify --replay: prove a backup restorable by restoring it and letting a throwaway
PostgreSQL recover it to its first consistent point.

1. Refuse root (PostgreSQL does too) before anything is downloaded; resolve NAME or LATEST;
   find the server programs of the backup's major version.
2. Restore the backup with backup-fetch's own code, in this process and with the same
   settings, into a private directory (``mkdtemp`` under $TMPDIR, mode 0700); tablespaces
   go below it too, never to their recorded locations (those belong to the live cluster).
3. Start ``postgres`` on it (:mod:`walg.postgres.server`): socket only, in that directory;
   ``restore_command`` is this same wal-g with the same configuration: the same config file
   (``--config``) and the same environment, inherited by the server and so by each
   ``wal-fetch`` (credentials are never written to disk nor put on a command line), with the
   background worker and prefetching off so that no process outlives the server;
   ``recovery_target = 'immediate'`` and ``recovery_target_action = 'shutdown'``.
4. Success is the server exiting 0 after logging "consistent recovery state reached at
   LSN", within WALG_REPLAY_TIMEOUT. The server is stopped (fast, then immediate) and the
   directory removed whatever happens: failure, timeout, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping

from walg import interrupts
from walg.backup.catalog import BackupInfo, find_backup
from walg.backup.fetch import backup_fetch
from walg.backup.recovery import walg_command
from walg.config import Settings
from walg.errors import Cancelled, ReplayFailed, ReplayUnavailable, local_file_error
from walg.logs import get_logger
from walg.postgres.binaries import find_bindir, major_version
from walg.postgres.server import (
    RecoveryServer,
    ServerEnd,
    control_settings,
    recovery_conf_needed,
    recovery_conf_text,
    server_settings,
)
from walg.storage import open_storage

__all__ = ["replay_backup", "replay_preflight", "replay_restore_command"]

_log = get_logger("walg")
_MISSING = re.compile(r"WAL file ([0-9A-F]{24}) is not in the archive")
_TAIL = 12  # server log lines shown with a failure
_ROOT_HINT = (
    "run backup-verify --replay as the database's OS user, "
    "e.g. sudo -u postgres wal-g backup-verify --replay LATEST"
)


def replay_backup(
    settings: Settings,
    name: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Restore backup ``name`` (or LATEST) into a private temporary directory and recover it
    to consistency in a throwaway server; a one-line summary on success. Raises a WalgError
    (ReplayFailed when the backup did not reach consistency) otherwise. ``timeout`` defaults
    to WALG_REPLAY_TIMEOUT; ``environ`` (default: this process's) is the environment the
    server and its restore_command run with."""
    started = time.monotonic()
    info, bindir = _preflight(settings, name)
    pg_version = info.sentinel.pg_version
    limit = settings.backup.replay_timeout if timeout is None else timeout
    with interrupts.stop_requests(), _work_dir() as work:
        data = _restore(settings, info, work)
        major = major_version(pg_version) if pg_version else _restored_major(data)
        bindir = bindir or find_bindir(major)
        lsn = _recover(settings, info.name, bindir, major, work, data, limit, environ)
    elapsed = time.monotonic() - started
    return f"backup {info.name} replayed to consistency at LSN {lsn} in {elapsed:.1f} s"


def replay_preflight(settings: Settings, name: str) -> None:
    """What replay_backup checks before it downloads anything, for a command to call before
    other long work: not root; the backup exists; its PostgreSQL version's server programs
    are installed (when the sentinel records the version). Raises a WalgError."""
    _preflight(settings, name)


def _preflight(settings: Settings, name: str) -> tuple[BackupInfo, str | None]:
    if os.geteuid() == 0:
        raise ReplayUnavailable(
            "backup-verify --replay starts a PostgreSQL server, and PostgreSQL refuses to run "
            "as root", hint=_ROOT_HINT,
        )
    info = find_backup(open_storage(settings), name)
    pg_version = info.sentinel.pg_version
    return info, find_bindir(major_version(pg_version)) if pg_version else None


def replay_restore_command(settings: Settings, walg: list[str] | None = None) -> str:
    """restore_command running this same wal-g with the same config file, each call alone
    (no prefetcher); words shell-quoted, ``%`` doubled so that only %f and %p are expanded."""
    words = list(walg or walg_command())
    if settings.config_file:
        words += ["--config", os.path.abspath(settings.config_file)]
    words += ["wal-fetch", "--no-prefetch"]
    return " ".join(shlex.quote(w).replace("%", "%%") for w in words) + " %f %p"


@contextlib.contextmanager
def _work_dir() -> Iterator[str]:
    """A private directory (mode 0700, under $TMPDIR), removed on the way out."""
    try:
        path = tempfile.mkdtemp(prefix="walg-replay-")
    except OSError as err:
        raise local_file_error(err) from None
    try:
        yield path
    finally:
        _remove(path)


def _remove(path: str) -> None:
    failed: list[str] = []
    for _attempt in range(3):  # a process just killed may have created a file meanwhile
        failed.clear()
        shutil.rmtree(path, onerror=lambda _f, p, _e: failed.append(p))
        if not os.path.lexists(path):
            return
    _log.warning("could not remove the replay directory", path=path, failed=failed[:3])


def _restore(settings: Settings, info: BackupInfo, work: str) -> str:
    """backup-fetch ``info`` into ``<work>/data``, its tablespaces below ``<work>/tblspc``."""
    data = os.path.join(work, "data")
    spec = info.sentinel.spec
    remap = {oid: os.path.join(work, "tblspc", oid) for oid in (spec.tablespaces if spec else {})}
    _log.info("restoring the backup for replay", backup=info.name, target=data)
    try:
        backup_fetch(settings, data, info.name, remap=remap)
    except Cancelled as stopped:  # its hint speaks of a partial restore left behind
        raise type(stopped)(stopped.msg) from None
    return data


def _restored_major(data: str) -> str:
    """The major version in the restored PG_VERSION (for sentinels without PgVersion)."""
    try:
        with open(os.path.join(data, "PG_VERSION"), encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ReplayFailed(
            f"the backup records no PostgreSQL version and its PG_VERSION is unreadable: {err}"
        ) from None


def _recover(
    settings: Settings,
    name: str,
    bindir: str,
    major: str,
    work: str,
    data: str,
    limit: float,
    environ: Mapping[str, str] | None,
) -> str:
    """Run the throwaway server over ``data``; the LSN at which it became consistent."""
    command = replay_restore_command(settings)
    values = server_settings(
        data_dir=data, work_dir=work, restore_command=command, major=major,
        control=control_settings(bindir, data),
    )
    _signal_recovery(data, major, command)
    interrupts.check()
    log_path = os.path.join(work, "server.log")
    _log.info("replaying WAL to consistency", backup=name, server=bindir, log=log_path)
    with RecoveryServer(bindir, work, log_path) as server:
        server.start(values, _server_env(environ))
        end = server.wait(limit if limit > 0 else float("inf"))
        if end.status is None:
            server.stop()
        interrupts.check()  # Ctrl-C or SIGTERM: stopped above, the directory goes next
        lines = server.log_lines()
    if end.status == 0 and end.consistent_at is not None:
        return end.consistent_at
    raise _failure(name, end, lines, limit)


def _signal_recovery(data: str, major: str, restore_command: str) -> None:
    """Archive recovery, not standby: recovery.signal (recovery.conf before 12)."""
    for leftover in ("standby.signal", "recovery.conf", "recovery.signal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(data, leftover))
    if recovery_conf_needed(major):
        name, text = "recovery.conf", recovery_conf_text(restore_command)
    else:
        name, text = "recovery.signal", ""
    fd = os.open(os.path.join(data, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _server_env(environ: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's environment for the server and its restore_command: wal-fetch works
    alone (no background worker, no daemon) so that nothing outlives the server."""
    env = dict(os.environ if environ is None else environ)
    for name in ("WALG_DAEMON_SOCKET", "PGDATA"):
        env.pop(name, None)
    env["WALG_WAL_BACKGROUND"] = "false"
    return env


def _failure(name: str, end: ServerEnd, lines: list[str], limit: float) -> ReplayFailed:
    tail = "\n".join(f"  {line}" for line in lines[-_TAIL:]) or "  (the server logged nothing)"
    if end.status is None:
        what = f"did not reach a consistent state within {limit:g} s"
        hint = "raise WALG_REPLAY_TIMEOUT if the WAL to replay is large; "
    else:
        what = f"did not reach a consistent state ({_reason(end, lines)})"
        hint = ""
    return ReplayFailed(
        f"backup {name} {what}",
        hint=f"{hint}the backup is not proven restorable; the server log ends with:\n{tail}",
    )


def _reason(end: ServerEnd, lines: list[str]) -> str:
    """The server's own words for its end (its first FATAL or PANIC line, else its status),
    and the WAL files wal-fetch found missing from the archive."""
    reason = next(
        (line.split(level, 1)[1].strip() for line in lines for level in ("FATAL:", "PANIC:")
         if level in line),
        None,
    )
    if reason is None and end.status is not None and end.status < 0:
        reason = f"the server was killed by signal {-end.status}"
    reason = reason or f"the server exited with status {end.status}"
    missing = sorted({m.group(1) for m in map(_MISSING.search, lines) if m})
    if missing:
        reason += f"; not in the archive: {', '.join(missing)}"
    return reason
