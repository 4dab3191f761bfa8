"""Where a backup's objects live in storage, with WAL-G's names (pure functions).

    basebackups_005/base_<WAL>[_D_<WAL>]_backup_stop_sentinel.json    the commit point
    basebackups_005/<backup>/metadata.json
    basebackups_005/<backup>/files_metadata.json
    basebackups_005/<backup>/walg_push_claim.json     backup-push's claim on the name
    basebackups_005/<backup>/tar_partitions/part_001.tar.lz4 ... pg_control.tar.lz4,
                                            backup_label.tar.lz4
    wal_005/<segment>.lz4     (.lzma, .br, none; WAL-G's .zst, .gz, .lzo: see wal_keys)
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "BACKUP_LABEL_PART",
    "BASEBACKUPS",
    "CLAIM",
    "FILES_METADATA",
    "METADATA",
    "PG_CONTROL_PART",
    "SENTINEL_SUFFIX",
    "TAR_PARTITIONS",
    "WAL",
    "WalKey",
    "backup_name",
    "claim_key",
    "files_metadata_key",
    "is_backup_name",
    "metadata_key",
    "name_from_sentinel_key",
    "part_key",
    "part_name",
    "parts_prefix",
    "sentinel_key",
    "start_timeline",
    "wal_key",
    "wal_keys",
]

BASEBACKUPS = "basebackups_005"
WAL = "wal_005"
SENTINEL_SUFFIX = "_backup_stop_sentinel.json"
METADATA = "metadata.json"
FILES_METADATA = "files_metadata.json"
CLAIM = "walg_push_claim.json"
TAR_PARTITIONS = "tar_partitions"
PG_CONTROL_PART = "pg_control.tar"
BACKUP_LABEL_PART = "backup_label.tar"

_WAL_NAME = "[0-9A-F]{24}"
_BACKUP = re.compile(rf"base_({_WAL_NAME})(?:_D_({_WAL_NAME}))?")


def backup_name(start_wal_file: str, delta_base_wal_file: str | None = None) -> str:
    """``base_<WAL file of the start LSN>``, with ``_D_<base's WAL file>`` for a delta."""
    name = f"base_{start_wal_file}"
    if delta_base_wal_file:
        name += f"_D_{delta_base_wal_file}"
    if not is_backup_name(name):
        raise ValueError(f"not a WAL file name: {start_wal_file!r} / {delta_base_wal_file!r}")
    return name


def is_backup_name(name: str) -> bool:
    """Whether ``name`` has the form of a backup name."""
    return _BACKUP.fullmatch(name) is not None


def start_timeline(name: str) -> int | None:
    """The timeline of a backup's start, from its name (``base_<TTTTTTTT...>``); None for
    a name not of that form."""
    match = _BACKUP.fullmatch(name)
    return int(match.group(1)[:8], 16) if match else None


def sentinel_key(name: str) -> str:
    return f"{BASEBACKUPS}/{name}{SENTINEL_SUFFIX}"


def name_from_sentinel_key(key: str) -> str | None:
    """The backup name of a sentinel key in basebackups_005/, or None for other keys."""
    if not key.startswith(BASEBACKUPS + "/") or not key.endswith(SENTINEL_SUFFIX):
        return None
    name = key[len(BASEBACKUPS) + 1 : -len(SENTINEL_SUFFIX)]
    return name if "/" not in name and name else None


def metadata_key(name: str) -> str:
    return f"{BASEBACKUPS}/{name}/{METADATA}"


def claim_key(name: str) -> str:
    return f"{BASEBACKUPS}/{name}/{CLAIM}"


def files_metadata_key(name: str) -> str:
    return f"{BASEBACKUPS}/{name}/{FILES_METADATA}"


def parts_prefix(name: str) -> str:
    return f"{BASEBACKUPS}/{name}/{TAR_PARTITIONS}/"


def part_name(number: int, extension: str) -> str:
    """``part_001.tar.lz4``: numbered from 1, at least three digits."""
    return f"part_{number:03d}.tar" + (f".{extension}" if extension else "")


def part_key(name: str, part: str) -> str:
    return parts_prefix(name) + part


class WalKey(NamedTuple):
    """A key under which an archived copy of a WAL file may be stored."""

    key: str
    method: str  # the compression method its extension names
    readable: bool  # False: stored by WAL-G with a method walg cannot read (zstd, gzip, lzo)


def wal_key(name: str, ext: str) -> str:
    """``wal_005/<name>.<ext>`` (``wal_005/<name>`` when ``ext`` is empty), as WAL-G names
    WAL file ``name``; ValueError if ``name`` is not a file name."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    return f"{WAL}/{name}.{ext}" if ext else f"{WAL}/{name}"


def wal_keys(name: str, preferred: str) -> list[WalKey]:
    """Every key under which an archived copy of WAL file ``name`` may exist, whatever the
    compression it was pushed with: the methods walg reads, ``preferred`` first, then
    WAL-G's order; then those only WAL-G reads. The one list of WAL extensions that
    archiving, the archive check and wal-fetch look for."""
    from walg.compression import EXTENSIONS, UNREADABLE, extension  # not on wal-push's path

    wal_key(name, "")  # ValueError for a bad name, before a bad method's ConfigError
    extension(preferred)
    methods = [preferred, *(m for m in EXTENSIONS if m != preferred)]
    keys = [WalKey(wal_key(name, EXTENSIONS[m]), m, True) for m in methods]
    return keys + [WalKey(wal_key(name, ext), m, False) for m, ext in UNREADABLE.items()]
