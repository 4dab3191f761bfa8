"""The text ``wal-g delete`` prints: exactly what a plan deletes, and what it keeps (pure).

One section per kind of thing, each line naming one backup or folder (with its object count
and size), WAL grouped by timeline and kind as ``first .. last`` with counts and bytes, then
the totals. The same text is printed before a confirmed deletion and for a dry run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from walg.backup.listing import size_text
from walg.backup.retention import Decision, Plan, classify_wal_key, wal_position
from walg.format import layout
from walg.postgres.wal import next_segment_name

if TYPE_CHECKING:
    from walg.backup.catalog import BackupInfo
    from walg.backup.snapshot import Snapshot

__all__ = ["render_plan", "size_text"]

_INDENT = "  "
Sized = tuple[str, int]  # (key, size)


class _Totals:
    """Objects and bytes counted so far; each key is counted once."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.objects = 0
        self.bytes = 0

    def add(self, items: Iterable[Sized]) -> list[Sized]:
        items = [item for item in items if item[0] not in self.keys]
        self.keys.update(key for key, _ in items)
        self.objects += len(items)
        self.bytes += sum(size for _, size in items)
        return items


def render_plan(plan: Plan, snapshot: Snapshot, title: str, confirm: bool) -> str:
    """The report of ``plan`` over what ``snapshot`` listed."""
    mode = "deleting" if confirm else "dry run, nothing is deleted (add --confirm to delete)"
    lines = [f"wal-g {title}: {mode}"]
    folders = {
        name: [(o.name, o.size) for o in objects]
        for name, objects in snapshot.folder_objects().items()
    }
    base_sizes = {o.name: o.size for o in snapshot.base_objects}
    backups = {b.name: b for b in snapshot.backups}
    totals = _Totals()
    if plan.delete:
        lines.append(f"backups to delete: {len(plan.delete)}")
        for decision in plan.delete:
            sentinel = layout.sentinel_key(decision.name)
            own = [*folders.get(decision.name, []), (sentinel, base_sizes.get(sentinel, 0))]
            counted = totals.add(own)
            lines.append(_backup_line(decision, backups.get(decision.name), counted))
    if plan.keep:
        lines.append(f"backups kept: {len(plan.keep)}")
        lines += [_backup_line(d, backups.get(d.name), None) for d in plan.keep]
    if plan.unfinished:
        lines.append(f"unfinished backup folders to delete: {len(plan.unfinished)}")
        for decision in plan.unfinished:
            counted = totals.add(folders.get(decision.name, []))
            where = f"under {layout.BASEBACKUPS}/{decision.name}/"
            lines.append(f"{_INDENT}{decision.name}  {_count(counted)} {where}  {decision.reason}")
    if plan.wal:
        wal_sizes = {o.name: o.size for o in snapshot.wal_objects}
        wal = totals.add((key, wal_sizes.get(key, 0)) for key in plan.wal)
        below = f", below segment {plan.wal_horizon}" if plan.wal_horizon else ""
        lines.append(f"WAL files to delete: {_count(wal, 'file')}{below}, in {layout.WAL}/")
        lines += _wal_lines(wal)
    if plan.temporary:
        temp_sizes = {o.name: o.size for o in snapshot.temporary}
        temp = totals.add((key, temp_sizes.get(key, 0)) for key in plan.temporary)
        lines.append(f"temporary files of interrupted writes to delete: {_count(temp, 'file')}")
        lines += [f"{_INDENT}{key}" for key, _ in temp]
    if plan.sweep:
        everything = [(o.name, o.size) for o in [*snapshot.base_objects, *snapshot.wal_objects]]
        rest = totals.add(everything)
        if rest:
            lines.append(f"other objects to delete: {_count(rest)}")
            lines += [f"{_INDENT}{key}" for key, _ in rest]
    lines += [f"note: {note}" for note in plan.notes]
    if plan.empty:
        lines.append("nothing to delete")
    else:
        lines.append(
            f"total to delete: {_summary(plan)}: "
            f"{_plural(totals.objects, 'object')}, {_plural(totals.bytes, 'byte')} "
            f"({size_text(totals.bytes)})"
        )
    return "\n".join(lines) + "\n"


def _backup_line(
    decision: Decision, backup: BackupInfo | None, objects: Sequence[Sized] | None
) -> str:
    parts = [decision.name]
    if backup is not None:
        parts.append("started " + backup.start_time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        parts.append(f"delta of {backup.sentinel.delta_from}" if backup.is_delta else "full")
        if backup.is_permanent and decision.reason != "permanent":
            parts.append("permanent")
    if objects is not None:
        parts.append(_count(objects))
    parts.append(decision.reason)
    return _INDENT + "  ".join(parts)


def _wal_lines(wal: Iterable[Sized]) -> list[str]:
    """``timeline T KIND: first .. last  N files (size)`` per run of consecutive segments of
    one timeline and kind, so that gaps (kept WAL) show."""
    groups: dict[tuple[int, str], list[tuple[int, str, int]]] = defaultdict(list)
    for key, size in wal:
        found = classify_wal_key(key)
        if found is None:
            groups[(-1, "other")].append((0, key, size))
            continue
        name, kind = found
        position = 0 if kind.value == "history" else wal_position(name)
        groups[(int(name[:8], 16), kind.value)].append((position, name, size))
    lines = []
    for (timeline, label), members in sorted(groups.items()):
        where = f"timeline {timeline} {label}" if timeline >= 0 else label
        for run in _runs(sorted(members), label == "segment"):
            first, last = run[0][1], run[-1][1]
            span = first if first == last else f"{first} .. {last}"
            files = _count([(name, size) for _, name, size in run], "file")
            lines.append(f"{_INDENT}{where}: {span}  {files}")
    return lines


def _runs(members: list[tuple[int, str, int]], split: bool) -> list[list[tuple[int, str, int]]]:
    """``members`` cut where one segment does not follow the previous (if ``split``)."""
    runs: list[list[tuple[int, str, int]]] = []
    for member in members:
        if runs and (not split or _follows(runs[-1][-1][1], member[1])):
            runs[-1].append(member)
        else:
            runs.append([member])
    return runs


def _follows(previous: str, name: str) -> bool:
    try:
        return next_segment_name(previous) == name
    except ValueError:  # not a 16 MiB segment name: compare the order keys
        return wal_position(name) == wal_position(previous) + 1


def _count(items: Sequence[Sized], word: str = "object") -> str:
    return f"{_plural(len(items), word)} ({size_text(sum(size for _, size in items))})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _summary(plan: Plan) -> str:
    counts: Mapping[str, int] = {
        "backup": len(plan.delete),
        "unfinished folder": len(plan.unfinished),
        "WAL file": len(plan.wal),
        "temporary file": len(plan.temporary),
    }
    parts = [_plural(n, word) for word, n in counts.items() if n]
    return ", ".join(parts) or "other objects"
