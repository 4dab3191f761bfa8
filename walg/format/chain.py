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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from walg.errors import IntegrityError
from walg.format.meta import FileDescription, FilesMetadata

__all__ = ["Selection", "parts_needed", "plan_restore"]


@dataclass(frozen=True)
class Selection:
    """What to take from one backup of the chain (names relative to PGDATA, no leading '/')."""

    name: str
    whole: frozenset[str] = field(default_factory=frozenset)
    increments: frozenset[str] = field(default_factory=frozenset)
    everything: bool = False

    def wants(self, member: str) -> bool:
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
