"""What ``wal-verify`` and ``wal-show`` print: results in, text out (pure; nothing printed).

The formats are WAL-G's:

- ``wal-verify --json``: one object keyed by check name (``integrity``, ``timeline``, in
  that order, as Go sorts map keys), each ``{"status": "OK"|"WARNING"|"FAILURE",
  "details": ...}``; integrity details are an array of ``{"timeline_id", "start_segment",
  "end_segment", "segments_count", "status"}`` (``null`` when nothing was scanned, as Go
  writes an empty slice), timeline details ``{"current_timeline_id",
  "highest_storage_timeline_id"}``. Compact, as ``json.Marshal`` writes it.
- ``wal-verify``: per check ``[wal-verify] <check> check status: <STATUS>``, ``[wal-verify]
  <check> check details:``, then a boxed table (integrity) or two lines (timeline).
- ``wal-show --detailed-json``: an array of timelines ``{"id", "parent_id",
  "switch_point_lsn" (a number), "start_segment", "end_segment", "segments_count",
  "missing_segments", "backups" (``backup-list --detail --json`` objects; left out when
  there are none), "segment_range_size", "status": "OK"|"LOST_SEGMENTS"}``.
- ``wal-show``: one boxed table, one row per timeline.

Boxed tables look like go-pretty's default style: upper-case headers, numeric columns
right-aligned (header included), others left-aligned.

walg ends every output with a newline (WAL-G's JSON has none); JSON parsers do not mind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from walg.backup.catalog import BackupInfo
from walg.backup.listing import detail_entry
from walg.format.timelines import CheckStatus, SegmentRange, TimelineInfo
from walg.postgres.wal import DEFAULT_SEGMENT_SIZE, format_lsn, segment_name

__all__ = [
    "CheckResult",
    "TimelineDetails",
    "boxed",
    "show_json",
    "show_text",
    "verify_json",
    "verify_text",
]


@dataclass(frozen=True)
class TimelineDetails:
    current: int
    highest: int


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict and details: segment ranges (integrity) or timelines."""

    status: CheckStatus
    ranges: Sequence[SegmentRange] = ()
    timelines: TimelineDetails | None = None
    segment_size: int = field(default=DEFAULT_SEGMENT_SIZE)


def boxed(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """A go-pretty style table (``+---+`` rules), newline-terminated."""
    titles = [h.upper() for h in header]
    widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(len(titles))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    return "\n".join([rule, line(titles), rule, *(line(r) for r in rows), rule]) + "\n"


# -- wal-verify -----------------------------------------------------------------------------


def _range_doc(row: SegmentRange, segment_size: int) -> dict[str, Any]:
    return {
        "timeline_id": row.timeline,
        "start_segment": segment_name(row.timeline, row.first, segment_size),
        "end_segment": segment_name(row.timeline, row.last, segment_size),
        "segments_count": row.count,
        "status": row.status.value,
    }


def _details_doc(result: CheckResult) -> Any:
    if result.timelines is not None:
        return {
            "current_timeline_id": result.timelines.current,
            "highest_storage_timeline_id": result.timelines.highest,
        }
    if not result.ranges:
        return None
    return [_range_doc(r, result.segment_size) for r in result.ranges]


def verify_json(results: Mapping[str, CheckResult]) -> str:
    """``wal-verify --json``: the checks by name, sorted, compact."""
    doc = {
        name: {"status": r.status.value, "details": _details_doc(r)}
        for name, r in sorted(results.items())
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _details_text(result: CheckResult) -> str:
    if result.timelines is not None:
        return (
            f"Highest timeline found in storage: {result.timelines.highest}\n"
            f"Current cluster timeline: {result.timelines.current}\n"
        )
    rows = [
        [str(d["timeline_id"]), d["start_segment"], d["end_segment"],
         str(d["segments_count"]), d["status"]]
        for d in (_range_doc(r, result.segment_size) for r in result.ranges)
    ]
    header = ("TLI", "Start", "End", "Segments count", "Status")
    return boxed(header, rows, (True, False, False, True, True))


def verify_text(results: Mapping[str, CheckResult]) -> str:
    """``wal-verify``: each check's status line, details line and details."""
    parts = []
    for name, result in sorted(results.items()):
        parts.append(f"[wal-verify] {name} check status: {result.status.value}\n")
        parts.append(f"[wal-verify] {name} check details:\n")
        parts.append(_details_text(result))
    return "".join(parts)


# -- wal-show -------------------------------------------------------------------------------


def _timeline_doc(
    info: TimelineInfo, backups: Sequence[BackupInfo] | None, segment_size: int
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": info.id,
        "parent_id": info.parent_id,
        "switch_point_lsn": info.switch_point_lsn,
        "start_segment": info.start_segment(segment_size),
        "end_segment": info.end_segment(segment_size),
        "segments_count": info.count,
        "missing_segments": [segment_name(info.id, n, segment_size) for n in info.missing],
    }
    if backups:
        doc["backups"] = [detail_entry(b) for b in backups]
    doc["segment_range_size"] = info.range_size
    doc["status"] = info.status
    return doc


def show_json(
    infos: Sequence[TimelineInfo],
    backups: Mapping[int, Sequence[BackupInfo]] | None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> str:
    """``wal-show --detailed-json``: the timelines, by id, compact."""
    docs = [
        _timeline_doc(i, backups.get(i.id) if backups is not None else None, segment_size)
        for i in infos
    ]
    return json.dumps(docs, ensure_ascii=False, separators=(",", ":")) + "\n"


def show_text(
    infos: Sequence[TimelineInfo],
    backups: Mapping[int, Sequence[BackupInfo]] | None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> str:
    """``wal-show``: one row per timeline (a Backups count column when backups were read)."""
    header = ["TLI", "Parent TLI", "Switchpoint LSN", "Start segment", "End segment",
              "Segment range", "Segments count", "Status"]
    numeric = [True, True, True, False, False, True, True, False]
    rows = []
    for i in infos:
        row = [str(i.id), str(i.parent_id), format_lsn(i.switch_point_lsn),
               i.start_segment(segment_size), i.end_segment(segment_size),
               str(i.range_size), str(i.count), i.status]
        if backups is not None:
            row.append(str(len(backups.get(i.id, ()))))
        rows.append(row)
    if backups is not None:
        header.append("Backups count")
        numeric.append(True)
    return boxed(header, rows, numeric)
