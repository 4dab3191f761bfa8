"""Read ``global/pg_control``: parse its bytes (pure) and verify its CRC-32C.

Supported layout: ``pg_control_version`` 1300, used by PostgreSQL 13, 14, 15 and 16
(checked field by field against ``pg_controldata`` of PostgreSQL 15). PostgreSQL 17 (1700)
and 12 (1201) move fields around; for them, and any other version, :func:`parse_control`
raises :class:`~walg.errors.PostgresError`, while :func:`parse_control_header` still reads the
three leading fields, which have kept their place since PostgreSQL 9.x.

Byte order: little-endian, as on x86-64 and arm64 (``float_format`` is checked, so a
big-endian file fails clearly instead of yielding nonsense).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from walg.errors import PostgresError

__all__ = [
    "CONTROL_FILE_SIZE",
    "SUPPORTED_CONTROL_VERSIONS",
    "ControlFile",
    "ControlHeader",
    "DbState",
    "control_path",
    "crc32c",
    "parse_control",
    "parse_control_header",
    "read_control",
]

CONTROL_FILE_SIZE: Final = 8192  # PG_CONTROL_FILE_SIZE: the file is padded to this size
SUPPORTED_CONTROL_VERSIONS: Final = frozenset({1300})
_CRC_OFFSET: Final = 288  # offsetof(ControlFileData, crc) for version 1300
_FLOAT_FORMAT: Final = 1234567.0  # FLOATFORMAT_VALUE

# (name, struct code, offset) of the ControlFileData fields (version 1300, x86-64 alignment).
_FIELDS: Final = (
    ("system_identifier", "Q", 0),
    ("pg_control_version", "I", 8),
    ("catalog_version", "I", 12),
    ("state", "i", 16),
    ("time", "q", 24),
    ("checkpoint_lsn", "Q", 32),
    ("redo_lsn", "Q", 40),  # checkPointCopy.redo
    ("timeline", "I", 48),  # checkPointCopy.ThisTimeLineID
    ("prev_timeline", "I", 52),
    ("full_page_writes", "?", 56),
    ("next_full_xid", "Q", 64),
    ("next_oid", "I", 72),
    ("checkpoint_time", "q", 104),
    ("min_recovery_lsn", "Q", 136),
    ("min_recovery_timeline", "I", 144),
    ("backup_start_lsn", "Q", 152),
    ("backup_end_lsn", "Q", 160),
    ("backup_end_required", "?", 168),
    ("wal_level", "i", 172),
    ("wal_log_hints", "?", 176),
    ("max_connections", "i", 180),
    ("max_wal_senders", "i", 188),
    ("max_align", "I", 204),
    ("float_format", "d", 208),
    ("block_size", "I", 216),
    ("relseg_size", "I", 220),
    ("wal_block_size", "I", 224),
    ("wal_segment_size", "I", 228),
    ("float8_by_value", "?", 248),
    ("data_checksum_version", "I", 252),
    ("crc", "I", _CRC_OFFSET),
)


class DbState(enum.IntEnum):
    """``DBState``: what the cluster was doing when pg_control was last written."""

    STARTING_UP = 0
    SHUT_DOWN = 1
    SHUT_DOWN_IN_RECOVERY = 2
    SHUTTING_DOWN = 3
    IN_CRASH_RECOVERY = 4
    IN_ARCHIVE_RECOVERY = 5
    IN_PRODUCTION = 6


@dataclass(frozen=True, slots=True)
class ControlHeader:
    """The leading fields of pg_control, at the same place in every supported version."""

    system_identifier: int
    pg_control_version: int
    catalog_version: int


@dataclass(frozen=True, slots=True)
class ControlFile:
    """The fields of ``ControlFileData`` walg uses (names as in ``pg_controldata``)."""

    system_identifier: int
    pg_control_version: int
    catalog_version: int
    state: int  # a DbState value; kept as int so unknown values do not fail parsing
    time: int  # Unix seconds of the last pg_control update
    checkpoint_lsn: int  # "Latest checkpoint location"
    redo_lsn: int  # "Latest checkpoint's REDO location"
    timeline: int  # "Latest checkpoint's TimeLineID"
    prev_timeline: int
    full_page_writes: bool
    next_full_xid: int  # epoch << 32 | xid
    next_oid: int
    checkpoint_time: int
    min_recovery_lsn: int
    min_recovery_timeline: int
    backup_start_lsn: int
    backup_end_lsn: int
    backup_end_required: bool
    wal_level: int  # 0 minimal, 1 replica, 2 logical
    wal_log_hints: bool
    max_connections: int
    max_wal_senders: int
    max_align: int
    float_format: float
    block_size: int
    relseg_size: int
    wal_block_size: int
    wal_segment_size: int
    float8_by_value: bool
    data_checksum_version: int
    crc: int

    @property
    def data_checksums(self) -> bool:
        """Whether the cluster was initialized with data checksums."""
        return self.data_checksum_version != 0

    @property
    def db_state(self) -> DbState | None:
        """``state`` as a :class:`DbState`, or None for a value this walg does not know."""
        try:
            return DbState(self.state)
        except ValueError:
            return None


# --- CRC-32C --------------------------------------------------------------------------------


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc`` (0 to start), as PostgreSQL's
    ``INIT_CRC32C`` / ``COMP_CRC32C`` / ``FIN_CRC32C``: google-crc32c's."""
    import google_crc32c

    return int(google_crc32c.extend(crc, bytes(data)))


# --- parsing --------------------------------------------------------------------------------

_HEADER: Final = struct.Struct("<QII")


def parse_control_header(data: bytes | bytearray | memoryview) -> ControlHeader:
    """System identifier, pg_control version and catalog version, for any PostgreSQL version."""
    if len(data) < _HEADER.size:
        raise PostgresError(
            f"pg_control is too short ({len(data)} bytes)",
            hint="the file is truncated or is not a pg_control file",
        )
    return ControlHeader(*_HEADER.unpack_from(data))


def parse_control(data: bytes | bytearray | memoryview, *, verify_crc: bool = True) -> ControlFile:
    """Parse the bytes of a ``global/pg_control`` file (version 1300) and check its CRC."""
    header = parse_control_header(data)
    if header.pg_control_version not in SUPPORTED_CONTROL_VERSIONS:
        raise PostgresError(
            f"unsupported pg_control version {header.pg_control_version}",
            hint="walg reads pg_control of PostgreSQL 13 to 16 (pg_control version 1300)",
        )
    if len(data) < _CRC_OFFSET + 4:
        raise PostgresError(
            f"pg_control is too short ({len(data)} bytes)",
            hint="the file is truncated; it should be 8192 bytes",
        )
    values = {
        name: struct.unpack_from("<" + code, data, offset)[0] for name, code, offset in _FIELDS
    }
    control = ControlFile(**values)
    if control.float_format != _FLOAT_FORMAT:
        raise PostgresError(
            "pg_control has an unexpected float format (wrong byte order?)",
            hint="walg reads pg_control written by a little-endian server",
        )
    if verify_crc:
        expected = crc32c(memoryview(data)[:_CRC_OFFSET])
        if expected != control.crc:
            raise PostgresError(
                f"pg_control CRC mismatch (stored {control.crc:08X}, computed {expected:08X})",
                hint="the file is corrupt, or was read while the server wrote it: read it again",
            )
    return control


def control_path(data_dir: str | Path) -> Path:
    """Where the control file of ``data_dir`` is."""
    return Path(data_dir) / "global" / "pg_control"


def read_control(data_dir: str | Path, *, verify_crc: bool = True) -> ControlFile:
    """Read and parse ``<data_dir>/global/pg_control``."""
    path = control_path(data_dir)
    try:
        with path.open("rb") as file:
            data = file.read(CONTROL_FILE_SIZE)
    except FileNotFoundError:
        raise PostgresError(
            f"{path} does not exist",
            hint=f"is {data_dir} a PostgreSQL data directory? check PGDATA",
        ) from None
    except OSError as error:
        raise PostgresError(
            f"cannot read {path}: {error.strerror}",
            hint="run walg as the user that owns the data directory (usually postgres)",
        ) from None
    return parse_control(data, verify_crc=verify_crc)
