"""A connection to PostgreSQL (psycopg2, loaded on first use) and non-exclusive base backups.

Decisions (see also the docstrings below):

- Database: what libpq does when PGDATABASE is unset (the user's name); if that database
  does not exist, ``postgres`` is tried, since walg only runs server-wide functions.
- Timeline: on a primary, the timeline of the current WAL insert position
  (``pg_walfile_name(pg_current_wal_lsn())``), which is right even just after a promotion,
  before the end-of-recovery checkpoint; on a standby, the newest of the last restartpoint's
  timeline (``pg_control_checkpoint()``, which is what ``pg_backup_start`` records on a standby)
  and the timeline the WAL receiver streams (``pg_stat_wal_receiver.received_tli``, visible
  with pg_read_all_stats).
- ``stop_backup`` raises PostgresError when the timeline at stop differs from the one at
  start: a backup from a standby that switched timelines must not be committed.
- ``stop_backup`` does not wait for WAL archiving by default (``wait_for_archive=False``),
  like WAL-G on PostgreSQL 15+: a failing archive_command would otherwise hang backup-push
  forever. Restoring the backup still needs the WAL up to the stop LSN in the archive.
- Backups and statements run with ``statement_timeout = 0`` and ``idle_session_timeout = 0``
  in this session, so server defaults cannot cancel a long backup.

Supported servers: PostgreSQL 9.6 to 17 (``pg_backup_start``/``pg_backup_stop`` from 15,
``pg_start_backup(label, fast, false)``/``pg_stop_backup(false, wait)`` before).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from walg.errors import PostgresError, QueryCancelled
from walg.postgres.label import BackupLabel, parse_backup_label
from walg.postgres.wal import parse_lsn, wal_file_name

if TYPE_CHECKING:
    from walg.config.settings import PostgresSettings

__all__ = [
    "MIN_SERVER_VERSION",
    "BackupStart",
    "BackupStop",
    "PgConnection",
    "Tablespace",
    "connect",
    "statement_timeout_ms",
]

MIN_SERVER_VERSION: Final = 90600
_CONNECT_HINT: Final = (
    "is PostgreSQL running? check PGHOST (host name or socket directory), PGPORT and PGUSER"
)
_AUTH_HINT: Final = "check PGUSER and the password (PGPASSWORD, PGPASSFILE or ~/.pgpass)"
_PRIVILEGE_HINT: Final = (
    "connect as a superuser, or grant the role pg_read_all_settings and EXECUTE on the "
    "backup functions (see the PostgreSQL docs on continuous archiving)"
)
_NO_DATABASE_RE: Final = re.compile(r'database ".*" does not exist')
_CONNECTION_PREFIX_RE: Final = re.compile(r"^connection to server .*? failed: ")
_INSUFFICIENT_PRIVILEGE: Final = "42501"
_QUERY_CANCELED: Final = "57014"  # statement_timeout or pg_cancel_backend
_MAX_TIMEOUT_MS: Final = 2**31 - 1  # statement_timeout is an int (milliseconds)
_UNITS: Final = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1 << 20, "16MB": 16 << 20}


@dataclass(frozen=True, slots=True)
class Tablespace:
    """A user tablespace: its OID (the name of its link in pg_tblspc), name and location."""

    oid: int
    name: str
    location: str


@dataclass(frozen=True, slots=True)
class BackupStart:
    """What ``start_backup`` learned: where the backup starts, on which timeline."""

    lsn: int
    timeline: int
    in_recovery: bool
    segment_size: int
    server_version_num: int

    @property
    def wal_file_name(self) -> str:
        """The WAL segment holding the start LSN (the backup is named ``base_`` + this)."""
        return wal_file_name(self.timeline, self.lsn, self.segment_size)


@dataclass(frozen=True, slots=True)
class BackupStop:
    """What ``stop_backup`` returned: the stop LSN and the files to store with the backup."""

    lsn: int
    label_file: str  # contents of backup_label
    tablespace_map: str  # contents of tablespace_map ("" when there are no tablespaces)
    timeline: int  # current_timeline() right after the stop

    @property
    def label(self) -> BackupLabel:
        """``label_file`` parsed."""
        return parse_backup_label(self.label_file)


def connect(settings: PostgresSettings, *, connect_timeout: int = 10) -> PgConnection:
    """Open a connection configured by ``settings`` (PGHOST, PGPORT, PGUSER, ...).

    Raises PostgresError with a one-line message (never the password) if it fails.
    """
    import psycopg2  # deferred: wal-push and wal-fetch must not pay for it

    params: dict[str, Any] = dict(settings.dsn_params())
    params.update(connect_timeout=str(connect_timeout), application_name="walg")
    try:
        raw = _open(psycopg2, params, fallback_database=settings.database is None)
    except psycopg2.Error as error:
        raise _connect_error(error, settings) from None
    return PgConnection(raw)


def _open(psycopg2: Any, params: dict[str, Any], *, fallback_database: bool) -> Any:
    try:
        return psycopg2.connect(**params)
    except psycopg2.Error as error:
        # libpq reports no SQLSTATE for connection failures: recognise the server's text.
        if not fallback_database or _NO_DATABASE_RE.search(str(error)) is None:
            raise
    return psycopg2.connect(**{**params, "dbname": "postgres"})


def _connect_error(error: Exception, settings: PostgresSettings) -> PostgresError:
    target = settings.host or "the default socket"
    if settings.port is not None:
        target += f" port {settings.port}"
    who = f" as {settings.user}" if settings.user else ""
    detail = _first_line(error, settings)
    return PostgresError(
        f"cannot connect to PostgreSQL at {target}{who}: {detail}", hint=_connect_hint(detail)
    )


def _connect_hint(detail: str) -> str:
    if re.search(r'^role ".*" does not exist', detail):
        return "check PGUSER: that role does not exist on this server"
    if _NO_DATABASE_RE.search(detail):
        return "check PGDATABASE: that database does not exist on this server"
    if "pg_hba.conf" in detail:
        return "allow this user and host in the server's pg_hba.conf, or check PGHOST and PGUSER"
    if "password" in detail or "authentication" in detail:
        return _AUTH_HINT
    return _CONNECT_HINT


def _message(error: Exception) -> str:
    """The server's primary message of ``error``, else the first line of its text."""
    primary = getattr(getattr(error, "diag", None), "message_primary", None)
    return str(primary) if primary else _first_line(error)


def _first_line(error: Exception, settings: PostgresSettings | None = None) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    text = _CONNECTION_PREFIX_RE.sub("", text)
    for prefix in ("FATAL:  ", "ERROR:  "):
        text = text.removeprefix(prefix)
    if settings is not None and settings.password is not None:
        secret = settings.password.reveal()
        if secret:
            text = text.replace(secret, "***")
    return text


def statement_timeout_ms(seconds: float) -> int:
    """``seconds`` as a statement_timeout: whole milliseconds, never 0 (which would mean no
    limit) for a positive duration, at most what the setting holds; 0 stays 0."""
    if seconds <= 0:
        return 0
    return min(max(1, round(seconds * 1000)), _MAX_TIMEOUT_MS)


class PgConnection:
    """One open session. Use as a context manager, or call :meth:`close`.

    A non-exclusive backup belongs to the session that started it: keep this object open
    between :meth:`start_backup` and :meth:`stop_backup`. Not safe to share between threads
    or processes; each worker that needs PostgreSQL connects on its own.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._started: BackupStart | None = None
        raw.autocommit = True
        self.server_version_num: int = int(raw.server_version)
        if self.server_version_num < MIN_SERVER_VERSION:
            raw.close()
            raise PostgresError(
                f"PostgreSQL {self.server_version_num} is too old",
                hint="walg supports PostgreSQL 9.6 and later",
            )

    # --- plumbing ---------------------------------------------------------------------------

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the session (an unfinished backup is aborted by the server)."""
        self._raw.close()

    @property
    def closed(self) -> bool:
        """Whether the session is closed (by :meth:`close` or because the server went away)."""
        return bool(self._raw.closed)

    def query(
        self, sql: str, params: Sequence[object] = (), *, what: str = "", hint: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` (with ``%s`` placeholders) and return all rows; PostgresError on failure.

        The error says "<what> failed: <server message>" (``what`` defaults to the SQL).
        """
        with self._translate(what or sql, hint), self._raw.cursor() as cursor:
            cursor.execute(sql, tuple(params))
            if cursor.description is None:
                return []
            return list(cursor.fetchall())

    def _one(
        self, sql: str, params: Sequence[object] = (), *, what: str = "", hint: str | None = None
    ) -> tuple[Any, ...]:
        rows = self.query(sql, params, what=what, hint=hint)
        if len(rows) != 1:
            raise PostgresError(f"{what or sql}: expected one row, got {len(rows)}")
        return rows[0]

    @contextlib.contextmanager
    def _translate(self, what: str, hint: str | None) -> Iterator[None]:
        import psycopg2

        try:
            yield
        except psycopg2.Error as error:
            if getattr(error, "pgcode", None) == _INSUFFICIENT_PRIVILEGE:
                hint = _PRIVILEGE_HINT
            elif self.closed or isinstance(error, psycopg2.OperationalError):
                hint = hint or "the connection to PostgreSQL was lost; check the server log"
            cancelled = getattr(error, "pgcode", None) == _QUERY_CANCELED
            kind = QueryCancelled if cancelled else PostgresError
            raise kind(f"{what} failed: {_message(error)}", hint=hint) from None

    # --- facts about the server -------------------------------------------------------------

    def data_directory(self) -> str:
        """The server's data directory (``SHOW data_directory``).

        Needs superuser or pg_read_all_settings; PostgresError saying so otherwise.
        """
        return str(self._one("SHOW data_directory", hint=_PRIVILEGE_HINT)[0])

    def data_checksums(self) -> bool:
        """Whether the cluster has page checksums (``SHOW data_checksums``)."""
        return str(self._one("SHOW data_checksums")[0]) == "on"

    def is_in_recovery(self) -> bool:
        """Whether the server is a standby (or still recovering)."""
        return bool(self._one("SELECT pg_is_in_recovery()")[0])

    def system_identifier(self) -> int:
        """The cluster's system identifier (``pg_control_system()``), as an unsigned number."""
        value = int(self._one("SELECT system_identifier FROM pg_control_system()")[0])
        return value % (1 << 64)  # the function returns bigint; the value is a uint64

    def wal_segment_size(self) -> int:
        """The WAL segment size in bytes."""
        setting, unit = self._one(
            "SELECT setting, unit FROM pg_settings WHERE name = 'wal_segment_size'"
        )
        return int(setting) * _UNITS.get(unit or "B", 1)

    def current_timeline(self) -> int:
        """The timeline the server is on (see the module docstring for the sources)."""
        if not self.is_in_recovery():
            if self.server_version_num >= 100000:
                sql = "SELECT pg_walfile_name(pg_current_wal_lsn())"
            else:
                sql = "SELECT pg_xlogfile_name(pg_current_xlog_location())"
            return int(str(self._one(sql)[0])[:8], 16)
        (checkpoint_tli,) = self._one("SELECT timeline_id FROM pg_control_checkpoint()")
        rows = self.query("SELECT received_tli FROM pg_stat_wal_receiver")
        received = [int(tli) for (tli,) in rows if tli is not None]
        return max([int(checkpoint_tli), *received])

    def current_lsn(self) -> int:
        """The WAL position as WAL-G's wal-verify reads it: the write position on a primary,
        the last position received from the primary on a standby (the last one replayed
        when no WAL is streamed, where WAL-G would fail on the NULL)."""
        new = self.server_version_num >= 100000
        if not self.is_in_recovery():
            sql = "SELECT pg_current_wal_lsn()::text" if new else (
                "SELECT pg_current_xlog_location()::text")
            return parse_lsn(str(self._one(sql)[0]))
        if new:
            sql = "SELECT coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text"
        else:
            sql = ("SELECT coalesce(pg_last_xlog_receive_location(),"
                   " pg_last_xlog_replay_location())::text")
        (text,) = self._one(sql)
        if text is None:
            raise PostgresError("the standby has neither received nor replayed any WAL yet")
        return parse_lsn(str(text))

    def tablespaces(self) -> list[Tablespace]:
        """User tablespaces (not pg_default/pg_global), in OID order."""
        rows = self.query(
            "SELECT oid, spcname, pg_tablespace_location(oid) FROM pg_tablespace"
            " WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid"
        )
        return [Tablespace(int(oid), str(name), str(location)) for oid, name, location in rows]

    # --- backups ----------------------------------------------------------------------------

    def start_backup(self, label: str, fast: bool = True) -> BackupStart:
        """Start a non-exclusive backup in this session.

        ``fast`` asks for an immediate checkpoint instead of a spread one. On a standby the
        start LSN is the last restartpoint's REDO location (no checkpoint is forced).
        """
        self._session_for_backup()
        if self.server_version_num >= 150000:
            sql = "SELECT pg_backup_start(%s, %s)::text, pg_is_in_recovery()"
        else:
            sql = "SELECT pg_start_backup(%s, %s, false)::text, pg_is_in_recovery()"
        hint = "check wal_level (replica or logical) and that no backup is running in this session"
        lsn_text, in_recovery = self._one(sql, (label, fast), what="starting the backup", hint=hint)
        # pg_backup_start takes the start point from the checkpoint it just made (or, on a
        # standby, the last restartpoint): that checkpoint's timeline is the start timeline.
        # stop_backup checks it against the label's START TIMELINE.
        (timeline,) = self._one("SELECT timeline_id FROM pg_control_checkpoint()")
        self._started = BackupStart(
            lsn=parse_lsn(str(lsn_text)),
            timeline=int(timeline),
            in_recovery=bool(in_recovery),
            segment_size=self.wal_segment_size(),
            server_version_num=self.server_version_num,
        )
        return self._started

    def stop_backup(self, wait_for_archive: bool = False, timeout: float = 0.0) -> BackupStop:
        """Finish the backup started in this session; return the label and tablespace map.

        Raises PostgresError if the timeline changed between start and stop: such a backup
        must not be committed. With ``wait_for_archive`` the call blocks until the WAL up to
        the stop LSN is archived (PostgreSQL 10+; 9.6 always waits on a primary), and only
        where the server archives: a primary with archive_mode on or always, a standby with
        always. ``timeout`` (seconds, 0 = none) is the call's statement_timeout, as in
        WAL-G: when it expires the server raises QueryCancelled, and the backup is over
        (the stop record is written, the label is lost); the session stays usable.
        """
        self.query("SET statement_timeout = %s", (statement_timeout_ms(timeout),))
        try:
            return self._stop_backup(wait_for_archive)
        finally:
            if not self.closed:
                self.query("SET statement_timeout = 0")

    def _stop_backup(self, wait_for_archive: bool) -> BackupStop:
        if self.server_version_num >= 150000:
            sql = "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(%s)"
            params: tuple[object, ...] = (wait_for_archive,)
        elif self.server_version_num >= 100000:
            sql = "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, %s)"
            params = (wait_for_archive,)
        else:
            sql = "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false)"
            params = ()
        hint = "the backup is not valid; run it again (was the server restarted or promoted?)"
        lsn_text, label_file, spcmap = self._one(sql, params, what="stopping the backup", hint=hint)
        stop = BackupStop(
            lsn=parse_lsn(str(lsn_text)),
            label_file=str(label_file),
            tablespace_map=str(spcmap or ""),
            timeline=self.current_timeline(),
        )
        started, self._started = self._started, None
        self._check_timeline(started, stop)
        return stop

    @staticmethod
    def _check_timeline(started: BackupStart | None, stop: BackupStop) -> None:
        """Refuse a backup during which the timeline changed (a standby followed a new one).

        Also catches a start timeline misread from pg_control_checkpoint() (a restartpoint
        on a new timeline landing between pg_backup_start and that query): the label's
        START TIMELINE is authoritative.
        """
        label_timeline = stop.label.start_timeline
        timelines = {stop.timeline}
        timelines.update(t for t in (label_timeline,) if t is not None)
        if started is not None:
            timelines.add(started.timeline)
        if len(timelines) > 1:
            first = started.timeline if started is not None else label_timeline
            raise PostgresError(
                f"the timeline changed during the backup (from {first} to {stop.timeline})",
                hint="the server was promoted or followed a new timeline; run the backup again",
            )

    def _session_for_backup(self) -> None:
        self.query("SET statement_timeout = 0")
        if self.server_version_num >= 140000:
            self.query("SET idle_session_timeout = 0")
