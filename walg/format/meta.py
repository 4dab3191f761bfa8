"""A backup's JSON documents, as WAL-G writes them (pure: dicts in, dataclasses out).

- the sentinel ``<name>_backup_stop_sentinel.json`` (WAL-G's BackupSentinelDtoV2),
- ``metadata.json`` (WAL-G's ExtendedMetadataDto),
- ``files_metadata.json`` (per-file IsIncremented/IsSkipped/MTime, the tar file sets and
  DatabasesByNames: every database's OID and relations, which partial restore reads).

Keys WAL-G does not know are ours and start with ``Walg`` (sizes and CRC-32C checksums of
every file, the compression used); readers ignore keys they do not know, in both
directions. LSNs are JSON integers, times RFC 3339 in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from walg.errors import IntegrityError
from walg.format.layout import start_timeline

__all__ = [
    "DATE_FORMAT",
    "DatabaseObjects",
    "ExtendedMetadata",
    "FileDescription",
    "FilesMetadata",
    "RelationInfo",
    "Sentinel",
    "TablespaceSpec",
    "format_time",
    "parse_time",
]

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_CORRUPT_BLOCKS = 10  # corrupt block numbers kept per file (WAL-G keeps 10 too)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?")


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as Go's time.Time reads it."""
    return value.astimezone(UTC).strftime(DATE_FORMAT)


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 as Go writes it (up to nanoseconds, Z or an offset) into UTC."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise IntegrityError(f"malformed time {text!r} in backup metadata")
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{base}.{micro}{offset}").astimezone(UTC)


@dataclass(frozen=True)
class TablespaceSpec:
    """Where PGDATA and each tablespace were: WAL-G's ``Spec``.

    ``tablespaces`` maps the symlink name in pg_tblspc (the tablespace OID) to its location.
    """

    base_prefix: str
    tablespaces: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "base_prefix": self.base_prefix,
            "tablespaces": list(self.tablespaces),
        }
        for name, location in self.tablespaces.items():
            doc[name] = {"loc": location, "link": f"pg_tblspc/{name}"}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TablespaceSpec:
        names = doc.get("tablespaces") or []
        locations = {}
        for name in names:
            entry = doc.get(name)
            if not isinstance(entry, Mapping) or not isinstance(entry.get("loc"), str):
                raise IntegrityError(f"tablespace {name!r} has no location in the backup's Spec")
            locations[str(name)] = entry["loc"]
        return cls(str(doc.get("base_prefix", "")), locations)


@dataclass(frozen=True)
class Sentinel:
    """What the sentinel says about a backup (WAL-G's V2 sentinel plus our Walg* keys)."""

    start_lsn: int
    finish_lsn: int
    timeline: int
    pg_version: int
    system_identifier: int | None = None
    uncompressed_size: int = 0
    compressed_size: int = 0
    data_catalog_size: int = 0
    spec: TablespaceSpec | None = None
    user_data: Any = None
    delta_from: str | None = None
    delta_full_name: str | None = None
    delta_count: int | None = None
    delta_lsn: int | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    hostname: str = ""
    data_dir: str = ""
    is_permanent: bool = False
    compression: str | None = None
    encrypted: bool | None = None
    files_metadata_disabled: bool = False

    @property
    def is_delta(self) -> bool:
        return self.delta_from is not None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "LSN": self.start_lsn,
            "Timeline": self.timeline,
            "PgVersion": self.pg_version,
            "FinishLSN": self.finish_lsn,
            "SystemIdentifier": self.system_identifier,
            "UncompressedSize": self.uncompressed_size,
            "CompressedSize": self.compressed_size,
            "DataCatalogSize": self.data_catalog_size,
            "Spec": self.spec.to_json() if self.spec else None,
            "Version": 2,
            "StartTime": format_time(self.start_time or _EPOCH),
            "FinishTime": format_time(self.finish_time or _EPOCH),
            "DateFmt": DATE_FORMAT,
            "Hostname": self.hostname,
            "DataDir": self.data_dir,
            "IsPermanent": self.is_permanent,
        }
        if self.user_data is not None:
            doc["UserData"] = self.user_data
        if self.delta_from is not None:
            doc.update(
                DeltaLSN=self.delta_lsn,
                DeltaFrom=self.delta_from,
                DeltaFullName=self.delta_full_name,
                DeltaCount=self.delta_count,
            )
        if self.files_metadata_disabled:
            doc["FilesMetadataDisabled"] = True
        if self.compression is not None:
            doc["WalgCompression"] = self.compression
        if self.encrypted is not None:
            doc["WalgEncrypted"] = self.encrypted
        return doc

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], where: str = "sentinel", name: str | None = None
    ) -> Sentinel:
        """The sentinel ``doc`` of backup ``name``. WAL-G writes no Timeline: it is the
        timeline of the backup's start WAL file, which the name holds (1 if unknown)."""
        try:
            return cls(
                start_lsn=int(doc["LSN"]),
                finish_lsn=int(doc["FinishLSN"]),
                timeline=_timeline(doc.get("Timeline"), name),
                pg_version=int(doc.get("PgVersion") or 0),
                system_identifier=_optional_int(doc.get("SystemIdentifier")),
                uncompressed_size=int(doc.get("UncompressedSize") or 0),
                compressed_size=int(doc.get("CompressedSize") or 0),
                data_catalog_size=int(doc.get("DataCatalogSize") or 0),
                spec=TablespaceSpec.from_json(doc["Spec"]) if doc.get("Spec") else None,
                user_data=doc.get("UserData"),
                delta_from=doc.get("DeltaFrom"),
                delta_full_name=doc.get("DeltaFullName"),
                delta_count=_optional_int(doc.get("DeltaCount")),
                delta_lsn=_optional_int(doc.get("DeltaLSN", doc.get("DeltaFromLSN"))),
                start_time=parse_time(doc["StartTime"]) if doc.get("StartTime") else None,
                finish_time=parse_time(doc["FinishTime"]) if doc.get("FinishTime") else None,
                hostname=str(doc.get("Hostname") or ""),
                data_dir=str(doc.get("DataDir") or ""),
                is_permanent=bool(doc.get("IsPermanent", False)),
                compression=doc.get("WalgCompression"),
                encrypted=doc.get("WalgEncrypted"),
                files_metadata_disabled=bool(doc.get("FilesMetadataDisabled", False)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise IntegrityError(f"malformed {where}: {err!r}") from err


@dataclass(frozen=True)
class ExtendedMetadata:
    """``metadata.json``: small, read by backup-list --detail."""

    start_time: datetime
    finish_time: datetime
    hostname: str
    data_dir: str
    pg_version: int
    start_lsn: int
    finish_lsn: int
    is_permanent: bool
    system_identifier: int | None
    timeline: int
    uncompressed_size: int
    compressed_size: int
    user_data: Any = None

    @classmethod
    def from_sentinel(cls, sentinel: Sentinel) -> ExtendedMetadata:
        return cls(
            start_time=sentinel.start_time or _EPOCH,
            finish_time=sentinel.finish_time or _EPOCH,
            hostname=sentinel.hostname,
            data_dir=sentinel.data_dir,
            pg_version=sentinel.pg_version,
            start_lsn=sentinel.start_lsn,
            finish_lsn=sentinel.finish_lsn,
            is_permanent=sentinel.is_permanent,
            system_identifier=sentinel.system_identifier,
            timeline=sentinel.timeline,
            uncompressed_size=sentinel.uncompressed_size,
            compressed_size=sentinel.compressed_size,
            user_data=sentinel.user_data,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "start_time": format_time(self.start_time),
            "finish_time": format_time(self.finish_time),
            "date_fmt": DATE_FORMAT,
            "hostname": self.hostname,
            "data_dir": self.data_dir,
            "pg_version": self.pg_version,
            "start_lsn": self.start_lsn,
            "finish_lsn": self.finish_lsn,
            "is_permanent": self.is_permanent,
            "system_identifier": self.system_identifier,
            "timeline": self.timeline,
            "uncompressed_size": self.uncompressed_size,
            "compressed_size": self.compressed_size,
        }
        if self.user_data is not None:
            doc["user_data"] = self.user_data
        return doc


@dataclass(frozen=True)
class FileDescription:
    """One file of a backup. ``size`` and ``crc32c`` (of the bytes stored) are ours."""

    mtime: datetime
    is_incremented: bool = False
    is_skipped: bool = False
    size: int | None = None
    crc32c: str | None = None
    corrupt_count: int = 0  # pages failing their checksum (backup-push --verify)
    corrupt_blocks: tuple[int, ...] = ()  # the first of them, as WAL-G keeps them

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "IsIncremented": self.is_incremented,
            "IsSkipped": self.is_skipped,
            "MTime": format_time(self.mtime),
        }
        if self.corrupt_count:
            doc["CorruptBlocks"] = {
                "CorruptBlocksCount": self.corrupt_count,
                "SomeCorruptBlocks": list(self.corrupt_blocks[:MAX_CORRUPT_BLOCKS]),
            }
        if self.size is not None:
            doc["WalgSize"] = self.size
        if self.crc32c is not None:
            doc["WalgCrc32c"] = self.crc32c
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FileDescription:
        corrupt = doc.get("CorruptBlocks") or {}
        return cls(
            mtime=parse_time(doc["MTime"]) if doc.get("MTime") else _EPOCH,
            is_incremented=bool(doc.get("IsIncremented", False)),
            is_skipped=bool(doc.get("IsSkipped", False)),
            size=_optional_int(doc.get("WalgSize")),
            crc32c=doc.get("WalgCrc32c"),
            corrupt_count=int(corrupt.get("CorruptBlocksCount") or 0),
            corrupt_blocks=tuple(int(b) for b in corrupt.get("SomeCorruptBlocks") or ()),
        )


@dataclass(frozen=True)
class RelationInfo:
    """A relation of DatabasesByNames (WAL-G's TableInfo): its OID, its file's number, and
    for a table with partitions or inheritors (``subtables``) theirs, by qualified name."""

    oid: int
    relfilenode: int
    subtables: dict[str, RelationInfo] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"oid": self.oid, "relfilenode": self.relfilenode}
        if self.subtables:
            doc["subtables"] = {k: v.to_json() for k, v in sorted(self.subtables.items())}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RelationInfo:
        subs = doc.get("subtables") or {}
        return cls(
            int(doc.get("oid") or 0),
            int(doc.get("relfilenode") or 0),
            {str(k): cls.from_json(v) for k, v in subs.items()},
        )


@dataclass(frozen=True)
class DatabaseObjects:
    """A database of DatabasesByNames (WAL-G's DatabaseObjectsInfo): its OID and its
    relations by ``namespace.name`` (JSON ``tables_new``, left out when empty, as WAL-G)."""

    oid: int
    tables: dict[str, RelationInfo] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"oid": self.oid}
        if self.tables:
            doc["tables_new"] = {k: v.to_json() for k, v in sorted(self.tables.items())}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DatabaseObjects:
        tables = doc.get("tables_new") or {}
        return cls(
            int(doc.get("oid") or 0), {str(k): RelationInfo.from_json(v) for k, v in tables.items()}
        )


@dataclass(frozen=True)
class FilesMetadata:
    """``files_metadata.json``: every file by its tar name, which part holds which, and
    (``databases``, WAL-G's DatabasesByNames) the databases by name; None when not recorded
    (older walg, WALG_DISABLE_PARTIAL_RESTORE), written only when recorded."""

    files: dict[str, FileDescription] = field(default_factory=dict)
    tar_file_sets: dict[str, list[str]] = field(default_factory=dict)
    databases: dict[str, DatabaseObjects] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "Files": {name: desc.to_json() for name, desc in sorted(self.files.items())},
            "TarFileSets": {part: sorted(names) for part, names in self.tar_file_sets.items()},
        }
        if self.databases:
            doc["DatabasesByNames"] = {
                name: db.to_json() for name, db in sorted(self.databases.items())
            }
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "files metadata") -> FilesMetadata:
        try:
            raw_files = doc.get("Files") or {}
            raw_sets = doc.get("TarFileSets") or {}
            files = {str(k): FileDescription.from_json(v) for k, v in raw_files.items()}
            sets = {str(k): [str(n) for n in v] for k, v in raw_sets.items()}
            raw_dbs = doc.get("DatabasesByNames")
            dbs = None if not raw_dbs else {
                str(k): DatabaseObjects.from_json(v) for k, v in raw_dbs.items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise IntegrityError(f"malformed {where}: {err!r}") from err
        return cls(files, sets, dbs)


def _timeline(stored: Any, name: str | None) -> int:
    if stored:
        return int(stored)
    return (start_timeline(name) if name else None) or 1


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
