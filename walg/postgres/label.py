"""Parse the ``backup_label`` text that ``pg_backup_stop`` returns (pure, no I/O).

The label looks like this (PostgreSQL 15; ``START TIMELINE`` exists since 11)::

    START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
    CHECKPOINT LOCATION: 0/2000060
    BACKUP METHOD: streamed
    BACKUP FROM: primary
    START TIME: 2024-01-01 12:00:00 UTC
    LABEL: base_000000010000000000000002
    START TIMELINE: 1

The label is stored in the backup verbatim; this parser only reads values walg needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from walg.postgres.wal import parse_lsn

__all__ = ["BackupLabel", "parse_backup_label", "parse_stop_lsn"]

_START_WAL_RE: Final = re.compile(r"(\S+) \(file ([0-9A-F]{24})\)")


@dataclass(frozen=True, slots=True)
class BackupLabel:
    """The fields of a ``backup_label`` file."""

    start_lsn: int
    start_wal_file: str
    checkpoint_lsn: int
    backup_method: str | None
    backup_from: str | None
    start_time: str | None
    label: str | None
    start_timeline: int | None  # None before PostgreSQL 11


def parse_backup_label(text: str) -> BackupLabel:
    """The fields of ``text``; ValueError if the mandatory lines are missing or malformed."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    start = fields.get("START WAL LOCATION")
    match = None if start is None else _START_WAL_RE.fullmatch(start)
    checkpoint = fields.get("CHECKPOINT LOCATION")
    if match is None or checkpoint is None:
        raise ValueError(
            "invalid backup label: expected 'START WAL LOCATION: X/X (file ...)' "
            "and 'CHECKPOINT LOCATION: X/X' lines"
        )
    timeline = fields.get("START TIMELINE")
    if timeline is not None and not timeline.isdigit():
        raise ValueError(f"invalid backup label: START TIMELINE {timeline!r} is not a number")
    return BackupLabel(
        start_lsn=parse_lsn(match.group(1)),
        start_wal_file=match.group(2),
        checkpoint_lsn=parse_lsn(checkpoint),
        backup_method=fields.get("BACKUP METHOD"),
        backup_from=fields.get("BACKUP FROM"),
        start_time=fields.get("START TIME"),
        label=fields.get("LABEL"),
        start_timeline=None if timeline is None else int(timeline),
    )


def parse_stop_lsn(text: str) -> int | None:
    """The ``STOP WAL LOCATION`` of a backup history file (``<segment>.<offset>.backup``,
    which pg_backup_stop writes in pg_wal on a primary: the label's lines plus the stop
    ones); None when the line is missing or malformed."""
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.strip() == "STOP WAL LOCATION":
            match = _START_WAL_RE.fullmatch(value.strip())
            try:
                return None if match is None else parse_lsn(match.group(1))
            except ValueError:
                return None
    return None

