"""Which backups exist in storage, and finding one by name or as LATEST (no formatting).

A backup exists when its sentinel ``basebackups_005/<name>_backup_stop_sentinel.json`` does:
the sentinel is written last, so a backup without one is unfinished and invisible here.

Backups are ordered by their recorded start time, then by name: names sort wrongly across a
timeline switch or a pg_upgrade (``base_00000002...`` of today sorts before
``base_00000001...`` of last year only by accident of the timeline digits). The start time
is the sentinel's ``StartTime``; old WAL-G sentinels have none, and then ``metadata.json``'s
``start_time`` is used, and failing that the sentinel object's modification time.

Listing is lenient: a malformed sentinel is logged as a warning and skipped (as WAL-G does),
so one corrupt object never hides the others. Asking for that backup by name is strict and
raises :class:`IntegrityError` naming the object.

Sentinels (and, for ``backup-list --detail`` and retention, ``metadata.json``) are small
objects read in parallel by a few threads: on S3 the latency of each GET dominates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar

from walg.errors import BackupNotFound, IntegrityError, NoBackupsFound, ObjectNotFound
from walg.format import layout
from walg.format.meta import ExtendedMetadata, FilesMetadata, Sentinel, parse_time
from walg.logs import get_logger
from walg.storage.base import ObjectInfo, Storage

__all__ = [
    "LATEST",
    "BackupInfo",
    "BackupNotFound",
    "NoBackupsFound",
    "find_backup",
    "find_backup_by_user_data",
    "list_backups",
    "read_files_metadata",
    "read_json_object",
    "read_metadata",
    "read_sentinel",
    "select_by_user_data",
]

LATEST = "LATEST"
"""The name that means "the newest backup" in backup-fetch (and WAL-G)."""

DEFAULT_WORKERS = 8
_SHOWN_NAMES = 10  # how many available backups an unknown-name error lists
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_log = get_logger("walg.backup.catalog")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BackupInfo:
    """One complete backup: its name, its sentinel and when the sentinel was written.

    ``metadata`` is ``metadata.json`` when it was read (``list_backups(with_metadata=True)``,
    or for old sentinels without times); None when it was not read or does not exist.
    """

    name: str
    sentinel: Sentinel
    modified: datetime
    metadata: ExtendedMetadata | None = None

    @property
    def wal_file(self) -> str:
        """The WAL file of the backup's start: the name between ``base_`` and ``_D_``."""
        if not self.name.startswith("base_"):
            return ""
        return self.name[len("base_") :].split("_D_", 1)[0]

    @property
    def start_time(self) -> datetime:
        """When the backup started; for old sentinels without times, the best known time."""
        if _known(self.sentinel.start_time):
            return self.sentinel.start_time
        if self.metadata is not None and _known(self.metadata.start_time):
            return self.metadata.start_time
        return self.modified

    @property
    def is_delta(self) -> bool:
        return self.sentinel.is_delta

    @property
    def details(self) -> ExtendedMetadata:
        """What ``backup-list --detail`` shows: metadata.json, else the sentinel's copy."""
        if self.metadata is not None:
            return self.metadata
        return ExtendedMetadata.from_sentinel(self.sentinel)

    @property
    def is_permanent(self) -> bool:
        """WAL-G's backup-mark rewrites only metadata.json, so it wins when it was read."""
        if self.metadata is not None:
            return self.metadata.is_permanent
        return self.sentinel.is_permanent

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.start_time, self.name)


# -- listing ------------------------------------------------------------------------------


def list_backups(
    storage: Storage,
    *,
    with_metadata: bool = False,
    strict: bool = False,
    workers: int = DEFAULT_WORKERS,
    malformed: list[ObjectInfo] | None = None,
) -> list[BackupInfo]:
    """Every complete backup in ``storage``, oldest first (by start time, then name).

    A malformed sentinel is skipped with a warning (and its object appended to
    ``malformed`` when given), or raises IntegrityError if ``strict``.
    With ``with_metadata`` each backup's metadata.json is read too (a malformed one is
    warned about and ignored: the sentinel holds the same facts).
    """
    sentinels = [
        (name, info)
        for info in storage.list_objects(layout.BASEBACKUPS + "/")
        if (name := layout.name_from_sentinel_key(info.name)) is not None
    ]

    def load(item: tuple[str, ObjectInfo]) -> BackupInfo | None:
        name, info = item
        backup = _load_listed(storage, name, info, strict)
        if backup is None and malformed is not None and _malformed(storage, name):
            malformed.append(info)
        if backup is not None and (with_metadata or not _known(backup.sentinel.start_time)):
            backup = _with_metadata(storage, backup)
        return backup

    found = [b for b in _parallel(load, sentinels, workers) if b is not None]
    return sorted(found, key=lambda b: b.sort_key)


def _load_listed(storage: Storage, name: str, info: ObjectInfo, strict: bool) -> BackupInfo | None:
    """The backup of a listed sentinel; None if it vanished or (lenient) is malformed."""
    try:
        sentinel = read_sentinel(storage, name)
    except ObjectNotFound:
        _log.debug("backup sentinel vanished while listing", backup=name, object=info.name)
        return None
    except IntegrityError as err:
        if strict:
            raise
        _log.warning("skipping backup with a malformed sentinel", backup=name, error=err.msg)
        return None
    return BackupInfo(name, sentinel, info.modified)


def _malformed(storage: Storage, name: str) -> bool:
    """Whether backup ``name``'s sentinel exists but cannot be read as one."""
    try:
        read_sentinel(storage, name)
    except IntegrityError:
        return True
    except ObjectNotFound:
        return False
    return False


def _with_metadata(storage: Storage, backup: BackupInfo) -> BackupInfo:
    try:
        metadata = read_metadata(storage, backup.name)
    except IntegrityError as err:
        _log.warning("ignoring malformed backup metadata", backup=backup.name, error=err.msg)
        return backup
    return BackupInfo(backup.name, backup.sentinel, backup.modified, metadata)


def _known(when: datetime | None) -> TypeGuard[datetime]:
    """Whether a recorded time is real: missing times are stored as the epoch (or Go's year 1)."""
    return when is not None and when > _EPOCH


def _parallel(function: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[function(i) for i in items]`` on up to ``workers`` threads, in order; the first
    exception is re-raised (the remaining calls still finish first)."""
    todo = list(items)
    if len(todo) <= 1 or workers <= 1:
        return [function(item) for item in todo]
    with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        return list(pool.map(function, todo))


# -- finding one ----------------------------------------------------------------------------


def find_backup(
    storage: Storage, name_or_latest: str, *, workers: int = DEFAULT_WORKERS
) -> BackupInfo:
    """The backup called ``name_or_latest``, or for ``LATEST`` the one that started last.

    Raises NoBackupsFound if there is none at all, BackupNotFound (listing what exists) for
    an unknown name, IntegrityError if the named backup's sentinel is malformed.
    """
    if name_or_latest == LATEST:
        damaged: list[ObjectInfo] = []
        backups = list_backups(storage, workers=workers, malformed=damaged)
        _check_latest(backups, damaged)
        if not backups:
            raise _no_backups(storage)
        return backups[-1]
    name = name_or_latest
    if _plausible_name(name):
        try:
            info = storage.stat_object(layout.sentinel_key(name))
            return BackupInfo(name, read_sentinel(storage, name), info.modified)
        except ObjectNotFound:
            pass
    backups = list_backups(storage, workers=workers)
    if not backups:
        raise _no_backups(storage)
    raise BackupNotFound(f"backup {name!r} not found in {storage.url}; {_available(backups)}")


def find_backup_by_user_data(
    storage: Storage, user_data: object, *, workers: int = DEFAULT_WORKERS
) -> BackupInfo:
    """The one backup whose UserData equals ``user_data`` (as WAL-G's UserData selector:
    JSON values compared deeply, numbers by value). NoBackupsFound if none has it,
    BackupNotFound naming them if several do."""
    backups = list_backups(storage, with_metadata=True, workers=workers)
    return select_by_user_data(backups, user_data, storage.url)


def select_by_user_data(backups: list[BackupInfo], user_data: object, where: str) -> BackupInfo:
    """The one backup of ``backups`` (listed with metadata) whose UserData is ``user_data``;
    errors as :func:`find_backup_by_user_data`."""
    found = [b for b in backups if _same_json(b.details.user_data, user_data)]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(b.name for b in found)
        raise BackupNotFound(
            f"{len(found)} backups have this UserData: {names}",
            hint="give a backup name instead, or UserData that only one backup has",
        )
    raise NoBackupsFound(
        f"no backup in {where} has this UserData",
        hint="`wal-g backup-list --detail --json` shows each backup's user_data",
    )


def _same_json(a: object, b: object) -> bool:
    """Deep equality of decoded JSON values as Go's reflect.DeepEqual sees them after
    encoding/json (every number a float64): 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _check_latest(backups: list[BackupInfo], damaged: list[ObjectInfo]) -> None:
    """LATEST must not quietly mean an older backup: refuse when a sentinel written after
    the newest readable one cannot be read (it may be the real latest backup)."""
    newest = backups[-1].modified if backups else None
    later = [d for d in damaged if newest is None or d.modified >= newest]
    if later:
        raise IntegrityError(
            f"the sentinel {later[-1].name} is malformed and may be the latest backup's; "
            "refusing to pick an older backup as LATEST",
            hint="name the backup to restore explicitly (see `wal-g backup-list`), or repair "
            "or delete that sentinel",
        )


def _plausible_name(name: str) -> bool:
    """Whether ``name`` can be a sentinel's name (one path segment, no dots-only)."""
    return bool(name) and "/" not in name and name not in (".", "..") and "\x00" not in name


def _no_backups(storage: Storage) -> NoBackupsFound:
    return NoBackupsFound(f"no backups found in {storage.url} (nothing in {layout.BASEBACKUPS}/)")


def _available(backups: list[BackupInfo]) -> str:
    """``available: newest, ..., and N more`` (newest first)."""
    newest = [b.name for b in reversed(backups[-_SHOWN_NAMES:])]
    text = "available: " + ", ".join(newest)
    if len(backups) > _SHOWN_NAMES:
        text += f", and {len(backups) - _SHOWN_NAMES} more"
    return text


# -- reading documents ----------------------------------------------------------------------


def read_sentinel(storage: Storage, name: str) -> Sentinel:
    """The sentinel of backup ``name``; ObjectNotFound if missing, IntegrityError if malformed."""
    key = layout.sentinel_key(name)
    return Sentinel.from_json(read_json_object(storage, key), where=f"sentinel {key}", name=name)


def read_metadata(storage: Storage, name: str) -> ExtendedMetadata | None:
    """``metadata.json`` of backup ``name``; None if missing, IntegrityError if malformed."""
    key = layout.metadata_key(name)
    try:
        doc = read_json_object(storage, key)
    except ObjectNotFound:
        return None
    return metadata_from_json(doc, where=f"backup metadata {key}")


def read_files_metadata(storage: Storage, name: str) -> FilesMetadata | None:
    """``files_metadata.json`` of backup ``name`` — or, for backups of old WAL-G versions
    that kept ``Files`` in the sentinel, that; None if neither exists, IntegrityError if
    malformed."""
    key = layout.files_metadata_key(name)
    try:
        doc = read_json_object(storage, key)
    except ObjectNotFound:
        try:
            sentinel = read_json_object(storage, layout.sentinel_key(name))
        except ObjectNotFound:
            return None
        if not sentinel.get("Files"):
            return None
        where = f"Files of sentinel {layout.sentinel_key(name)}"
        return FilesMetadata.from_json({"Files": sentinel["Files"]}, where=where)
    return FilesMetadata.from_json(doc, where=f"files metadata {key}")


def read_json_object(storage: Storage, key: str) -> dict[str, Any]:
    """The JSON object stored under ``key``; IntegrityError naming ``key`` if it is not one."""
    data = storage.read_bytes(key)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise IntegrityError(f"malformed JSON in {key}: {err}") from err
    if not isinstance(doc, dict):
        raise IntegrityError(
            f"malformed JSON in {key}: expected an object, got {type(doc).__name__}"
        )
    return doc


def metadata_from_json(doc: Mapping[str, Any], where: str = "backup metadata") -> ExtendedMetadata:
    """Parse WAL-G's ExtendedMetadataDto (``metadata.json``); IntegrityError if malformed.

    Missing times (or Go's zero time) become the Unix epoch, which means "unknown".
    """
    try:
        return ExtendedMetadata(
            start_time=_metadata_time(doc.get("start_time")),
            finish_time=_metadata_time(doc.get("finish_time")),
            hostname=str(doc.get("hostname") or ""),
            data_dir=str(doc.get("data_dir") or ""),
            pg_version=int(doc.get("pg_version") or 0),
            start_lsn=int(doc.get("start_lsn") or 0),
            finish_lsn=int(doc.get("finish_lsn") or 0),
            is_permanent=bool(doc.get("is_permanent", False)),
            system_identifier=_optional_int(doc.get("system_identifier")),
            timeline=int(doc.get("timeline") or 0),
            uncompressed_size=int(doc.get("uncompressed_size") or 0),
            compressed_size=int(doc.get("compressed_size") or 0),
            user_data=doc.get("user_data"),
        )
    except IntegrityError as err:
        raise IntegrityError(f"malformed {where}: {err.msg}") from err
    except (TypeError, ValueError) as err:
        raise IntegrityError(f"malformed {where}: {err!r}") from err


def _metadata_time(value: Any) -> datetime:
    if not value:
        return _EPOCH
    parsed = parse_time(str(value))
    return parsed if _known(parsed) else _EPOCH


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
