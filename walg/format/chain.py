"""Restoring a delta backup: which file comes from which backup of its chain (pure).

A delta chain is a full backup and the deltas built on it, each on the one before. The
backup being restored (the last of the chain) lists every file the restored cluster has;
for each, walking back from it:

- IsSkipped: the file did not change; look at the backup before;
- IsIncremented: its increment will be applied; look at the backup before for the rest;
- otherwise the file is stored whole there: the walk ends.

The restore then runs backup by backup, oldest first: from each, only the files whose
whole copy or increment it holds are extracted (the backup being restored is extracted
entirely: its directories, links and every file it stores). A file that no backup of the
chain stores whole, or that an older backup lacks although a newer one skipped it, makes
the chain unusable, and that is said before anything is written.

Walking a chain (``walk_bases``, ``dependents``) is the one implementation of following
DeltaFrom: back from a backup to its full backup, or forward to the backups based on it.
It works on names only (a lookup of each backup's DeltaFrom), so every flow uses it
whatever its type of backup; a loop of DeltaFrom names (damaged sentinels) ends the walk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from walg.errors import IntegrityError
from walg.format.meta import FileDescription, FilesMetadata

__all__ = [
    "MAX_CHAIN",
    "DeltaChain",
    "Selection",
    "dependents",
    "parts_needed",
    "plan_restore",
    "walk_bases",
]

MAX_CHAIN: Final = 10_000
"""Longer chains are taken as damaged sentinels (a walk never runs unbounded)."""


@dataclass(frozen=True)
class DeltaChain:
    """A backup and the backups it is based on, nearest first, as far as they exist.

    ``names[0]`` is where the walk started. If the last one is a delta, the walk stopped
    because its base does not exist (``missing``) or is already in the chain (``loop``,
    damaged sentinels); otherwise ``names[-1]`` is the chain's full backup.
    """

    names: tuple[str, ...]
    missing: str = ""
    loop: str = ""

    @property
    def complete(self) -> bool:
        """The walk reached a full backup."""
        return not self.missing and not self.loop

    @property
    def bases(self) -> tuple[str, ...]:
        """The backups the first one is based on, nearest first."""
        return self.names[1:]

    def full_name(self, recorded: Callable[[str], str | None]) -> str:
        """The name of the chain's full backup: the end of a complete walk; else the first
        DeltaFullName recorded along it (``recorded(name)``, nearest first: old sentinels
        lack it); else the oldest name the walk reached (a missing base, or a loop's)."""
        if self.complete:
            return self.names[-1]
        for name in self.names:
            full = recorded(name)
            if full:
                return full
        return self.missing or self.loop

    def check(self, where: str) -> None:
        """IntegrityError unless the walk reached a full backup (``where``: the storage)."""
        if self.missing:
            raise IntegrityError(
                f"{self.names[-1]} is a delta of {self.missing}, which is not in {where}",
                hint="the delta chain is incomplete; restore a backup whose chain is whole",
            )
        if self.loop:
            raise IntegrityError(
                f"the delta chain of {self.names[0]} loops back to {self.loop}",
                hint="the backups' sentinels are damaged; restore a backup of another chain",
            )


def walk_bases(
    start: str, delta_from: Callable[[str], str | None] | Mapping[str, str | None]
) -> DeltaChain:
    """Follow DeltaFrom back from backup ``start`` (see :class:`DeltaChain`).

    ``delta_from(name)`` (or ``delta_from[name]``) is an existing backup's DeltaFrom (None
    or empty for a full backup) and raises KeyError for a backup that does not exist; it is
    not called for ``start``'s bases beyond a missing one or a loop."""
    lookup = delta_from.__getitem__ if isinstance(delta_from, Mapping) else delta_from
    names, seen = [start], {start}
    base = lookup(start)
    while base:
        if base in seen or len(names) > MAX_CHAIN:
            return DeltaChain(tuple(names), loop=base)
        try:
            following = lookup(base)
        except KeyError:
            return DeltaChain(tuple(names), missing=base)
        names.append(base)
        seen.add(base)
        base = following
    return DeltaChain(tuple(names))


def dependents(name: str, delta_from: Iterable[tuple[str, str | None]]) -> set[str]:
    """The backups based on ``name``, directly or not; ``delta_from``: (backup, DeltaFrom)
    of every backup."""
    pairs = list(delta_from)
    found: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {b for b, base in pairs if base in frontier} - found - {name}
        found |= frontier
    return found


@dataclass(frozen=True)
class Selection:
    """What to take from one backup of the chain (names relative to PGDATA, no leading '/');
    ``excluded``: files left out on purpose (partial restore), whatever the rest says."""

    name: str
    whole: frozenset[str] = field(default_factory=frozenset)
    increments: frozenset[str] = field(default_factory=frozenset)
    everything: bool = False
    excluded: frozenset[str] = field(default_factory=frozenset)

    def wants(self, member: str) -> bool:
        if member in self.excluded:
            return False
        return self.everything or member in self.whole or member in self.increments


def _files(metadata: FilesMetadata) -> dict[str, FileDescription]:
    return {name.lstrip("/"): desc for name, desc in metadata.files.items()}


def plan_restore(chain: Sequence[tuple[str, FilesMetadata]]) -> list[Selection]:
    """One :class:`Selection` per backup of ``chain`` ((name, files metadata), the full
    backup first, the backup to restore last), in the order they are to be extracted."""
    if not chain:
        raise ValueError("an empty chain")
    files = [_files(metadata) for _, metadata in chain]
    names = [name for name, _ in chain]
    whole: list[set[str]] = [set() for _ in chain]
    increments: list[set[str]] = [set() for _ in chain]
    last = len(chain) - 1
    for member in files[last]:
        index = last
        while True:
            desc = files[index].get(member)
            if desc is None:
                raise IntegrityError(
                    f"{member} is missing from {names[index]}, but {names[index + 1]} "
                    "relies on it (skipped or stored as an increment)",
                    hint="the delta chain is damaged; restore another backup",
                )
            if not desc.is_skipped and not desc.is_incremented:
                whole[index].add(member)
                break
            if desc.is_incremented:
                increments[index].add(member)
            if index == 0:
                raise IntegrityError(
                    f"no backup of the chain of {names[last]} stores {member} whole "
                    f"(even {names[0]} has only an increment or a skip)",
                    hint="the chain does not start with a full backup; restore another backup",
                )
            index -= 1
    return [
        Selection(names[i], frozenset(whole[i]), frozenset(increments[i]), everything=i == last)
        for i in range(len(chain))
    ]


def parts_needed(
    selection: Selection, tar_file_sets: Mapping[str, Sequence[str]]
) -> set[str] | None:
    """The parts (object names, e.g. ``part_003.tar.lz4``) of a backup that hold a selected
    file; None (all of them) for the backup being restored, or when the backup does not say
    which part holds what."""
    if selection.everything or not tar_file_sets:
        return None
    return {
        part
        for part, members in tar_file_sets.items()
        if any(selection.wants(member.lstrip("/")) for member in members)
    }
