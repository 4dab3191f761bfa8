"""Object keys of WAL files and the classification of WAL file names (pure, no I/O).

A WAL file ``<name>`` is stored as ``wal_005/<name>.<ext>``, ``ext`` being the compression
method's extension (none for method ``none``), as WAL-G stores it. Encryption does not change
the key. The name classification itself lives in :mod:`walg.postgres.wal`; this module adds
what archiving needs on top: which keys a name may be stored under, and which ready
segments a ``wal-push`` may upload ahead of their own archive_command call.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from walg.format import layout
from walg.postgres.wal import (
    WalFileKind,
    is_backup_history_name,
    is_history_name,
    is_partial_name,
    is_segment_name,
    wal_file_kind,
)

__all__ = [
    "WalFileKind",
    "ahead_candidates",
    "always_compare",
    "is_backup_history_name",
    "is_history_name",
    "is_partial_name",
    "is_segment_name",
    "wal_file_kind",
    "wal_key",
]


def wal_key(name: str, method: str) -> str:
    """``wal_005/<name>.<ext>``: where WAL file ``name`` compressed with ``method`` is stored."""
    from walg.compression import extension  # not on wal-push's fast path

    layout.wal_key(name, "")  # ValueError for a bad name before the method's ConfigError
    return layout.wal_key(name, extension(method))


def always_compare(name: str) -> bool:
    """Whether an archived copy of ``name`` is compared before pushing even without
    WALG_PREVENT_WAL_OVERWRITE: timeline history files, as WAL-G does (a different history
    file for the same timeline means two clusters share one archive)."""
    return is_history_name(name)


def ahead_candidates(
    current: str, ready: Iterable[str], skip: Container[str], limit: int
) -> list[str]:
    """The segments a push of ``current`` may upload in the background, oldest first.

    Only plain segment names from ``ready`` (names whose ``.ready`` file exists) on the same
    timeline as ``current`` and after it, not in ``skip`` (already uploaded ahead), at most
    ``limit`` of them. Nothing when ``current`` is not itself a segment.
    """
    if limit <= 0 or not is_segment_name(current):
        return []
    timeline = current[:8]
    chosen = sorted(
        name
        for name in set(ready)
        if is_segment_name(name) and name[:8] == timeline and name > current and name not in skip
    )
    return chosen[:limit]
