"""The one exception hierarchy of walg.

Every error a user can cause is a :class:`WalgError` carrying a one-line message, a hint
that says how to fix it, and the process exit code. Only ``walg.cli.main`` turns these into
exit codes and printed lines; everything else raises.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "EX_ABORT_RECOVERY",
    "EX_DATAERR",
    "EX_GENERAL",
    "EX_INTERRUPTED",
    "EX_NOT_FOUND",
    "EX_TERMINATED",
    "EX_USAGE",
    "BackupNameTaken",
    "BackupNotFound",
    "Cancelled",
    "ConfigError",
    "CryptoError",
    "DeltaBaseError",
    "GraphInvalid",
    "IntegrityError",
    "LocalFileError",
    "NoBackupsFound",
    "ObjectExists",
    "ObjectNotFound",
    "PermissionDenied",
    "PipelineError",
    "PostgresError",
    "QueryCancelled",
    "ReplayFailed",
    "ReplayUnavailable",
    "RetentionError",
    "StageFailed",
    "StorageError",
    "StorageUnavailable",
    "StorageUnreachable",
    "Terminated",
    "VerificationFailed",
    "VersionsUnsupported",
    "WalFileInvalid",
    "WalNotArchived",
    "WalgError",
    "WorkerDied",
    "local_file_error",
]

EX_GENERAL = 1
EX_USAGE = 2
EX_NOT_FOUND = 74  # what restore_command must return for "no such segment" (EX_IOERR)
# What wal-fetch returns when a WAL file is in the archive but cannot be restored (corrupt,
# undecryptable, storage failing after retries, destination not writable, bad settings).
# PostgreSQL's RestoreArchivedFile reads 1-125 as "not available": archive recovery would end
# there and the server promote without the later WAL. Above 125 (wait_result_is_any_signal
# with include_command_not_found) it aborts recovery (FATAL) instead. Not 126/127: shells use
# them for "not executable"/"not found", and PostgreSQL's log would say exactly that; not
# 129-192 either: shells report a child killed by signal N as 128+N. 200 reads as itself.
EX_ABORT_RECOVERY = 200
# backup-verify found the backup damaged or incomplete (sysexits' EX_DATAERR): apart from 1,
# which then means the check itself could not be made (storage unreachable, no key, ...).
EX_DATAERR = 65
EX_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EX_TERMINATED = 143  # 128 + SIGTERM


class WalgError(Exception):
    """Base of every error walg raises on purpose.

    ``msg`` is one line naming the problem; ``hint`` says what to do about it.
    ``retryable`` tells retry loops whether trying again can help.
    """

    exit_code: int = EX_GENERAL
    retryable: bool = False
    default_hint: str = ""

    def __init__(self, msg: str, hint: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.hint = self.default_hint if hint is None else hint

    def __reduce__(self) -> tuple[object, ...]:
        # Keep msg and hint when an error crosses a process boundary.
        return (_rebuild_error, (type(self), self.msg, self.hint, self.__dict__))

    def __str__(self) -> str:
        return self.msg


def _rebuild_error(
    cls: type[WalgError], msg: str, hint: str, state: dict[str, object]
) -> WalgError:
    err = cls.__new__(cls)
    Exception.__init__(err, msg)
    err.__dict__.update(state)
    err.msg = msg
    err.hint = hint
    return err


class ConfigError(WalgError):
    """A setting is missing, malformed or contradicts another."""

    exit_code = EX_USAGE
    default_hint = "see the configuration table in README.md"


class StorageError(WalgError):
    """The storage refused or failed an operation."""


class ObjectNotFound(StorageError):
    """The object does not exist in storage."""

    exit_code = EX_NOT_FOUND


class ObjectExists(StorageError):
    """A create-if-absent write found an object under the key already (it was not changed)."""


class PermissionDenied(StorageError):
    """The credentials do not allow the operation."""

    default_hint = "check the credentials and the permissions of the bucket or folder"


class StorageUnavailable(StorageError):
    """A transient failure: timeout, connection reset, throttling, 5xx."""

    retryable = True
    default_hint = "the storage may be unreachable; check the network and endpoint and try again"


class StorageUnreachable(StorageUnavailable):
    """No connection to the storage: refused, timed out, or its name does not resolve.
    Retried within WALG_STORAGE_RETRY_BUDGET per call, not for as long as answers that
    the service gives (5xx, throttling), so a storage that is down fails in seconds."""

    default_hint = (
        "check that the storage is up and reachable from this host (endpoint, DNS, "
        "firewall, proxy); WALG_STORAGE_RETRY_BUDGET sets how long each call retries"
    )


class VersionsUnsupported(StorageError):
    """The storage keeps no object versions, or walg cannot act on them there."""

    default_hint = "object versions exist only in versioned S3 buckets and GCS buckets"


class PipelineError(WalgError):
    """The stage runtime itself failed."""


class GraphInvalid(PipelineError):
    """A stage graph was declared wrongly (cycle, unknown stage, bad bound)."""


class StageFailed(PipelineError):
    """A stage raised something that could not be carried back as itself."""


class WorkerDied(PipelineError):
    """A worker process ended without reporting (for example, killed by a signal)."""

    default_hint = "a worker process was killed, possibly by the OOM killer; check the system logs"


class Cancelled(PipelineError):
    """The run was stopped by Ctrl-C (SIGINT) before it finished; see also Terminated."""

    exit_code = EX_INTERRUPTED
    default_hint = "nothing was committed; run the command again"


class Terminated(Cancelled):
    """The run was stopped by SIGTERM (at a safe point: see :mod:`walg.interrupts`)."""

    exit_code = EX_TERMINATED


class PostgresError(WalgError):
    """PostgreSQL refused, or is not in the state a command needs."""


class QueryCancelled(PostgresError):
    """The server cancelled a statement (statement_timeout, or pg_cancel_backend)."""


class WalNotArchived(PostgresError):
    """The WAL a backup needs did not reach the archive (in time, or not in this storage)."""

    default_hint = (
        "fix archive_command (its errors are in the server log), or raise "
        "WALG_STOP_BACKUP_TIMEOUT; the backup was not committed"
    )


class ReplayFailed(PostgresError):
    """backup-verify --replay: the restored backup did not reach a consistent state in a
    throwaway server (WAL missing or damaged, the server failed, the wait timed out): the
    backup is not proven restorable, so the exit code is backup-verify's for a bad backup."""

    exit_code = EX_DATAERR
    default_hint = "the backup is not proven restorable; the server log lines above say why"


class ReplayUnavailable(PostgresError):
    """backup-verify --replay cannot run here (run as root, no server programs of the
    backup's version): nothing was downloaded, and nothing is known about the backup."""

    exit_code = EX_USAGE


class IntegrityError(WalgError):
    """Stored data is corrupt or does not match its checksum."""

    default_hint = "the object may be corrupt; try another backup"


class VerificationFailed(IntegrityError):
    """backup-verify read the backup and found it missing objects or files, or holding bad
    ones (each is printed before this error)."""

    exit_code = EX_DATAERR
    default_hint = "restore another backup, and take a new one; the problems are listed above"


class WalFileInvalid(IntegrityError):
    """A WAL file's content does not fit its name (size, page header, history syntax)."""

    default_hint = "a damaged or misnamed file: PostgreSQL must not get it back from the archive"


class CryptoError(WalgError):
    """Encryption or decryption failed (missing key, wrong key, bad passphrase)."""

    default_hint = "check WALG_PGP_KEY / WALG_PGP_KEY_PATH / WALG_PGP_KEY_PASSPHRASE"


class RetentionError(WalgError):
    """A delete or backup-mark request that would break a backup a kept one needs, or a
    permanent backup; nothing was deleted or changed."""

    default_hint = "run `wal-g backup-list --detail` to see the backups, their bases and marks"


class BackupNotFound(WalgError):
    """No backup of that name (a user error: exit 1, not wal-fetch's 74)."""

    default_hint = "run `wal-g backup-list` to see the backups, or use LATEST"


class NoBackupsFound(BackupNotFound):
    """The storage holds no backup at all."""

    default_hint = (
        "check that WALG_FILE_PREFIX / WALG_S3_PREFIX / WALG_GS_PREFIX names the storage "
        "backup-push wrote to, or take a backup first with `wal-g backup-push`"
    )


class BackupNameTaken(WalgError):
    """backup-push found its backup's name claimed by another backup-push, or taken by a
    complete backup; nothing of that backup was overwritten."""


class DeltaBaseError(WalgError):
    """A delta backup cannot be based on the chosen backup (another cluster, a newer LSN)."""

    default_hint = "pass --full to take a full backup and start a new chain"


class LocalFileError(WalgError):
    """The local file system refused an operation: the user's environment (permissions,
    space, a read-only mount), not a bug in walg. The message names the path."""


_OS_HINTS: dict[int, str] = {
    _errno.EACCES: "check the permissions of the path for the user running wal-g",
    _errno.EPERM: "check the permissions of the path for the user running wal-g",
    _errno.ENOSPC: "free space on the file system holding the path, then run the command again",
    _errno.EDQUOT: "the disk quota is exhausted; free space or raise the quota, then run again",
    _errno.EROFS: "the file system is mounted read-only; choose a writable location",
    _errno.ENOENT: "check that the path exists",
    _errno.ENOTDIR: "a component of the path is not a directory",
    _errno.EISDIR: "the path is a directory where a file was expected",
    _errno.EEXIST: "the path exists already; remove it or choose another",
    _errno.EMFILE: "too many open files: raise the limit (ulimit -n) or lower the concurrency",
    _errno.ENFILE: "the system ran out of file handles; lower the concurrency",
    _errno.EIO: "the disk reported an I/O error; check the system log and the hardware",
    _errno.ENOMEM: "the system is out of memory; lower the concurrency or free memory",
    _errno.ELOOP: "too many levels of symbolic links in the path",
    _errno.ENAMETOOLONG: "the path is too long",
}


def local_file_error(err: OSError) -> LocalFileError:
    """The one-line error for an ``OSError`` the user's environment caused: what failed,
    on which path, and a hint chosen by its errno."""
    reason = err.strerror or str(err) or type(err).__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    msg = f"{reason}: {' -> '.join(paths)}" if paths else reason
    hint = _OS_HINTS.get(err.errno or 0, "check the path and the system log")
    return LocalFileError(msg, hint)
