"""What backup-verify found, and the pure rules that turn a backup's metadata and what its
parts held into problems (no I/O here).

A problem names what is missing or bad (an object of ``tar_partitions/``, a file relative
to PGDATA); a note says what could not be checked (a backup without per-file CRC-32C
values, without a file list, without data checksums). The report is printed as a short
summary with ERROR lines, or as JSON for exporters (:meth:`VerifyReport.to_json`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from walg.backup.completeness import expected_files, file_key
from walg.format.meta import FilesMetadata
from walg.stages.verify import Problem, VerifiedPart

__all__ = [
    "SHOWN_PROBLEMS",
    "Problem",
    "VerifyReport",
    "missing_files",
    "missing_parts",
]

#: ERROR lines printed at most (the JSON report lists every problem).
SHOWN_PROBLEMS = 50


def missing_parts(present: Collection[str], files: FilesMetadata | None) -> list[str]:
    """The parts ``files_metadata.json``'s TarFileSets names that are not ``present``."""
    sets = files.tar_file_sets if files is not None else {}
    return sorted(p for p in sets if p not in present)


def missing_files(
    files: FilesMetadata | None, seen: Collection[str], failed_parts: Collection[str]
) -> tuple[list[str], int]:
    """(files listed, not skipped, and found in no part; how many more were not seen because
    the part TarFileSets puts them in could not be read to its end)."""
    expected = expected_files(files, None)
    unseen = sorted(n for n in expected if n not in seen)
    if not unseen or files is None or not failed_parts:
        return unseen, 0
    in_failed = {
        file_key(member)
        for part, members in files.tar_file_sets.items()
        if part in failed_parts
        for member in members
    }
    missing = [n for n in unseen if n not in in_failed]
    return missing, len(unseen) - len(missing)


@dataclass
class VerifyReport:
    """The outcome of verifying ``backup`` (and the backups of its delta chain)."""

    backup: str
    chain: list[str] = field(default_factory=list)
    objects: int = 0
    files: int = 0
    stored_bytes: int = 0
    file_bytes: int = 0
    pages: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, kind: str, message: str, backup: str, obj: str | None = None) -> None:
        self.problems.append(Problem(kind, message, obj, None, backup))

    def add_parts(self, backup: str, parts: Iterable[VerifiedPart]) -> None:
        """Count what the parts of ``backup`` held, and take their problems."""
        for part in parts:
            self.objects += 1
            self.files += part.checked
            self.file_bytes += part.file_bytes
            self.pages += part.pages
            self.problems += [dataclasses.replace(p, backup=backup) for p in part.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_name": self.backup,
            "ok": self.ok,
            "chain": self.chain,
            "objects_checked": self.objects,
            "files_checked": self.files,
            "bytes_read": self.stored_bytes,
            "bytes_decoded": self.file_bytes,
            "pages_checked": self.pages,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "not_checked": self.notes,
            "duration_seconds": round(self.duration, 3),
        }

    def summary(self) -> str:
        """One line for stdout."""
        verdict = "OK" if self.ok else f"FAILED, {len(self.problems)} problem(s)"
        chain = f" (delta chain of {len(self.chain)})" if len(self.chain) > 1 else ""
        pages = f", {self.pages} pages" if self.pages else ""
        return (
            f"backup {self.backup}{chain}: {verdict}; {self.objects} objects, "
            f"{self.files} files{pages}, {_mb(self.file_bytes)} decoded from "
            f"{_mb(self.stored_bytes)} in {self.duration:.1f} s"
        )

    def error_messages(self, limit: int = SHOWN_PROBLEMS) -> list[str]:
        """The problems, one message each, for ERROR log lines (at most ``limit``, then how
        many more)."""
        lines = []
        for p in self.problems[:limit]:
            prefix = f"{p.backup}: " if p.backup and p.backup != self.backup else ""
            lines.append(f"{prefix}{p.message}")
        more = len(self.problems) - limit
        if more > 0:
            lines.append(f"... and {more} more problem(s) (--json lists all)")
        return lines


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
