"""Is a backup whole? The checks backup-fetch makes before and after it writes (pure).

Before anything is written: every object the backup's metadata names must exist — each
part of ``files_metadata.json``'s TarFileSets that the restore needs (all of them for the
backup being restored; for the older backups of a delta chain, those holding a file taken
from them), pg_control.tar, and backup_label (its own part, or a part TarFileSets says
holds it). Backups without TarFileSets (old WAL-G, WALG_WITHOUT_FILES_METADATA) can only be
checked for pg_control.tar and backup_label.tar.

After extracting: every file ``Files`` lists (those a delta deliberately skipped excepted:
an older backup of the chain restores them) must have been written. Sizes and CRC-32C
values are checked by the extractor as each file is written.

TarFileSets is not held to the same rule in reverse: WAL-G lists a file there when it
plans it, and leaves it out of the tar (and out of ``Files``) if it vanished before it was
read, as PostgreSQL allows; ``Files`` is what was stored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from walg.errors import IntegrityError
from walg.format import layout
from walg.format.chain import Selection, parts_needed
from walg.format.meta import FilesMetadata
from walg.format.scan import PG_CONTROL

__all__ = [
    "BACKUP_LABEL",
    "PG_CONTROL",
    "check_label_written",
    "check_parts_present",
    "check_written",
    "expected_files",
    "file_key",
]

BACKUP_LABEL = "backup_label"
_SHOWN = 5  # how many missing names an error lists
_HINT = "the backup is incomplete or damaged; restore another backup"


def file_key(name: str) -> str:
    """A tar or metadata name as a path relative to PGDATA: no leading or trailing '/'."""
    return name.strip("/")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_parts_present(
    backup: str,
    present: Collection[str],
    files: FilesMetadata | None,
    selection: Selection | None,
    *,
    restored: bool,
) -> None:
    """Raise IntegrityError naming what is missing from ``present`` (object names under
    tar_partitions/) that restoring ``backup`` needs. ``restored``: this is the backup being
    restored (not an older one of its chain), which also needs pg_control and backup_label."""
    sets = files.tar_file_sets if files is not None else {}
    needed = parts_needed(selection, sets) if selection is not None else None
    wanted = set(sets) if needed is None else needed
    missing = sorted(p for p in wanted if p not in present)
    if restored:
        missing += _missing_labels(present, sets)
    if missing:
        raise IntegrityError(
            f"backup {backup} is incomplete: {_listing(missing)} missing from "
            f"{layout.TAR_PARTITIONS}/",
            hint=_HINT,
        )


def _missing_labels(present: Collection[str], sets: Mapping[str, Sequence[str]]) -> list[str]:
    """pg_control.tar and backup_label.tar (with the extension the other parts have)."""
    ext = next((p.split(".tar", 1)[1] for p in sorted(present) if ".tar" in p), "")
    missing = []
    if not any(p.startswith(layout.PG_CONTROL_PART) for p in present):
        missing.append(layout.PG_CONTROL_PART + ext)
    has_label = any(p.startswith(layout.BACKUP_LABEL_PART) for p in present)
    if not has_label and not _listed(sets, BACKUP_LABEL):
        missing.append(layout.BACKUP_LABEL_PART + ext)
    return missing


def _listed(sets: Mapping[str, Sequence[str]], name: str) -> bool:
    return any(file_key(member) == name for members in sets.values() for member in members)


def expected_files(files: FilesMetadata | None, selection: Selection | None) -> set[str]:
    """The names (see :func:`file_key`) that extracting this backup must write: every file
    listed and not skipped, limited to ``selection`` for an older backup of a chain, and
    without the files a partial restore leaves out (``selection.excluded``)."""
    if files is None:
        return set()
    names = {file_key(n) for n, d in files.files.items() if not d.is_skipped}
    names.discard("")
    if selection is not None:  # an older backup's files, or a partial restore's
        names = {n for n in names if selection.wants(n)}
    return names


def check_written(backup: str, expected: Iterable[str], written: Collection[str]) -> None:
    """Raise IntegrityError naming the files of ``expected`` that were not ``written``."""
    missing = sorted(n for n in expected if n not in written)
    if missing:
        raise IntegrityError(
            f"backup {backup}: {_listing(missing)} listed in its files metadata "
            "but not found in its parts",
            hint=_HINT,
        )


def check_label_written(backup: str, written: Collection[str]) -> None:
    """Raise IntegrityError unless backup_label was restored: without it PostgreSQL would
    start from pg_control's checkpoint instead of the backup's, and silently lose data."""
    if BACKUP_LABEL not in written:
        raise IntegrityError(f"backup {backup} holds no {BACKUP_LABEL}", hint=_HINT)
