"""``wal-g backup-list`` output: backups in, text out (pure; nothing is printed here).

The formats are WAL-G's (v3, ``internal/printlist``), oldest backup first:

- plain: columns separated like Go's ``tabwriter`` (each column as wide as its widest cell
  plus one space; the last column unpadded), header ``backup_name modified wal_file_name
  storage_name``; ``--detail`` adds ``start_time finish_time hostname data_dir pg_version
  start_lsn finish_lsn is_permanent`` and then walg's own ``uncompressed_size
  compressed_size delta_from user_data``. Times are RFC 3339 in UTC to the second, LSNs
  PostgreSQL's ``X/Y``; an unknown value is ``-``.
- ``--pretty``: the same columns in a boxed table with a ``#`` column and upper-case
  headers, numbers right-aligned, sizes in binary units.
- ``--json``: an array of objects with WAL-G's keys (``backup_name``, ``time`` — the
  sentinel's modification time —, ``wal_file_name``, ``storage_name``; with ``--detail``
  ``start_time``, ``finish_time``, ``date_fmt``, ``hostname``, ``data_dir``,
  ``pg_version``, ``start_lsn``/``finish_lsn`` as integers, ``is_permanent``,
  ``system_identifier``, ``uncompressed_size``, ``compressed_size``, ``user_data`` when
  set) plus walg's ``delta_from``, ``delta_full_name``, ``delta_count``. Times have
  sub-second digits as Go writes them; an unknown time is ``null``. ``--pretty`` indents
  by four spaces, as WAL-G does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from walg.backup.catalog import BackupInfo
from walg.format.meta import DATE_FORMAT

__all__ = ["DEFAULT_STORAGE_NAME", "NO_BACKUPS", "detail_entry", "render", "size_text"]

DEFAULT_STORAGE_NAME = "default"
"""WAL-G's name for the one (primary) storage, shown in the storage_name column."""

NO_BACKUPS = "No backups found"
"""WAL-G's message (on stderr) when the storage holds no backup."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNKNOWN = "-"


@dataclass(frozen=True)
class _Column:
    name: str  # plain header and JSON-like name
    title: str  # --pretty header
    value: Callable[[BackupInfo, str], str]  # (backup, storage name) -> plain text
    pretty: Callable[[BackupInfo, str], str] | None = None  # --pretty text, if different
    numeric: bool = False  # right-aligned in --pretty


def render(
    backups: Sequence[BackupInfo],
    *,
    detail: bool = False,
    as_json: bool = False,
    pretty: bool = False,
    storage_name: str = DEFAULT_STORAGE_NAME,
) -> str:
    """The text ``backup-list`` prints for ``backups`` (oldest first), newline-terminated.

    Tables of no backups are empty (WAL-G prints nothing); JSON of no backups is ``[]``.
    """
    if as_json:
        docs = [_json_entry(b, storage_name, detail) for b in backups]
        if pretty:  # Go's encoder.SetIndent("", "    ")
            return json.dumps(docs, ensure_ascii=False, indent=4) + "\n"
        return json.dumps(docs, ensure_ascii=False, separators=(",", ":")) + "\n"
    if not backups:
        return ""
    columns = _DETAIL if detail else _BASIC
    if pretty:
        return _boxed(columns, backups, storage_name)
    return _tabbed(columns, backups, storage_name)


# -- cells ----------------------------------------------------------------------------------


def _time_text(value: datetime | None) -> str:
    """RFC 3339 in UTC to the second (Go's time.RFC3339), ``-`` when unknown."""
    if value is None or value <= _EPOCH:
        return _UNKNOWN
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with the sub-second digits that are not zero (Go's RFC3339Nano)."""
    if value is None or value <= _EPOCH:
        return None
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _lsn_text(lsn: int) -> str:
    """PostgreSQL's ``%X/%X`` form of an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _text(value: str) -> str:
    return value if value else _UNKNOWN


def _user_data_text(value: Any) -> str:
    """Compact JSON (no spaces after separators, so the plain table stays split-friendly)."""
    if value is None:
        return _UNKNOWN
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def size_text(size: int) -> str:
    """``size`` in bytes with binary units for people: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


_BASIC: tuple[_Column, ...] = (
    _Column("backup_name", "Backup name", lambda b, s: b.name),
    _Column("modified", "Modified", lambda b, s: _time_text(b.modified)),
    _Column("wal_file_name", "WAL file name", lambda b, s: _text(b.wal_file)),
    _Column("storage_name", "Storage name", lambda b, s: s),
)

_DETAIL: tuple[_Column, ...] = (
    *_BASIC,
    _Column("start_time", "Start time", lambda b, s: _time_text(b.details.start_time)),
    _Column("finish_time", "Finish time", lambda b, s: _time_text(b.details.finish_time)),
    _Column("hostname", "Hostname", lambda b, s: _text(b.details.hostname)),
    _Column("data_dir", "Datadir", lambda b, s: _text(b.details.data_dir)),
    _Column("pg_version", "PG version", lambda b, s: str(b.details.pg_version), numeric=True),
    _Column("start_lsn", "Start LSN", lambda b, s: _lsn_text(b.details.start_lsn)),
    _Column("finish_lsn", "Finish LSN", lambda b, s: _lsn_text(b.details.finish_lsn)),
    _Column("is_permanent", "Permanent", lambda b, s: str(b.is_permanent).lower()),
    _Column(
        "uncompressed_size",
        "Uncompressed size",
        lambda b, s: str(b.details.uncompressed_size),
        pretty=lambda b, s: size_text(b.details.uncompressed_size),
        numeric=True,
    ),
    _Column(
        "compressed_size",
        "Compressed size",
        lambda b, s: str(b.details.compressed_size),
        pretty=lambda b, s: size_text(b.details.compressed_size),
        numeric=True,
    ),
    _Column("delta_from", "Delta from", lambda b, s: _text(b.sentinel.delta_from or "")),
    _Column("user_data", "User data", lambda b, s: _user_data_text(b.details.user_data)),
)


# -- tables ---------------------------------------------------------------------------------


def _tabbed(columns: Sequence[_Column], backups: Sequence[BackupInfo], storage: str) -> str:
    """Go's ``tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)``: pad every cell but the last."""
    rows = [[c.name for c in columns]]
    rows += [[c.value(b, storage) for c in columns] for b in backups]
    widths = [max(len(row[i]) for row in rows) + 1 for i in range(len(columns))]
    lines = []
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("".join(padded) + row[-1])
    return "\n".join(lines) + "\n"


def _boxed(columns: Sequence[_Column], backups: Sequence[BackupInfo], storage: str) -> str:
    """A boxed table like WAL-G's go-pretty one: ``#`` from 0, upper-case headers."""
    header = ["#", *(c.title.upper() for c in columns)]
    numeric = [True, *(c.numeric for c in columns)]
    body = [
        [str(i), *((c.pretty or c.value)(b, storage) for c in columns)]
        for i, b in enumerate(backups)
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str], align: Sequence[bool]) -> str:
        parts = [
            cell.rjust(w) if right else cell.ljust(w)
            for cell, w, right in zip(cells, widths, align, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    lines = [rule, line(header, [False] * len(header)), rule]
    lines += [line(row, numeric) for row in body]
    lines.append(rule)
    return "\n".join(lines) + "\n"


# -- JSON -----------------------------------------------------------------------------------


def detail_entry(backup: BackupInfo, storage_name: str = DEFAULT_STORAGE_NAME) -> dict[str, Any]:
    """One backup as ``backup-list --detail --json`` writes it (also wal-show's backups)."""
    return _json_entry(backup, storage_name, True)


def _json_entry(backup: BackupInfo, storage_name: str, detail: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "backup_name": backup.name,
        "time": _json_time(backup.modified),
        "wal_file_name": backup.wal_file,
        "storage_name": storage_name,
    }
    if not detail:
        return doc
    meta = backup.details
    doc.update(
        start_time=_json_time(meta.start_time),
        finish_time=_json_time(meta.finish_time),
        date_fmt=DATE_FORMAT,
        hostname=meta.hostname,
        data_dir=meta.data_dir,
        pg_version=meta.pg_version,
        start_lsn=meta.start_lsn,
        finish_lsn=meta.finish_lsn,
        is_permanent=backup.is_permanent,
        system_identifier=meta.system_identifier,
        uncompressed_size=meta.uncompressed_size,
        compressed_size=meta.compressed_size,
    )
    if meta.user_data is not None:
        doc["user_data"] = meta.user_data
    sentinel = backup.sentinel
    doc.update(
        delta_from=sentinel.delta_from,
        delta_full_name=sentinel.delta_full_name,
        delta_count=sentinel.delta_count,
    )
    return doc
