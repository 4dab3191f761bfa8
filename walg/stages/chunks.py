"""The items that flow through the backup and restore graphs, and what stages report in them.

A stage's report is a typed value, not a dict: a field that is mistyped or missing is a
type error (mypy) or an AttributeError/TypeError at once, never a feature silently off.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Chunk",
    "ExtractedPart",
    "PartDone",
    "StoredFile",
    "TarPartReport",
    "by_part",
    "named_error",
]


@dataclass(frozen=True)
class StoredFile:
    """What the tar composer stored for one file: ``size`` bytes (the increment's size
    when ``incremented``), the file's ``mtime``, the CRC-32C of the stored bytes, and the
    blocks whose page checksum failed verification."""

    size: int
    mtime: float
    crc32c: str
    incremented: bool = False
    corrupt_blocks: tuple[int, ...] = ()


@dataclass(frozen=True)
class TarPartReport:
    """What the tar composer wrote into one part: its files by tar member name (WAL-G's,
    with a leading '/') and the size of the uncompressed tar stream."""

    files: dict[str, StoredFile]
    tar_size: int


@dataclass
class Chunk:
    """A piece of one stored object's byte stream (a tar part), in order.

    ``part`` routes every chunk of one object to the same worker of a keyed stage;
    ``seq`` numbers them from 0; the chunk with ``last`` ends the object and, coming from
    the tar composer, carries its ``report`` (transforms pass it through). A stage run
    ``tolerant`` (backup-verify) that cannot go on with an object ends it early with a
    ``last`` chunk carrying the ``error`` (one line naming the problem); the stages after
    it pass that chunk on as it is.
    """

    part: int
    name: str
    seq: int
    data: bytes | bytearray
    last: bool = False
    report: TarPartReport | None = None
    error: str | None = None


@dataclass
class PartDone:
    """A tar part has been stored: its ``stored_bytes`` (compressed, encrypted) and what
    the tar composer reported about it."""

    part: int
    name: str
    stored_bytes: int
    report: TarPartReport


@dataclass
class ExtractedPart:
    """A tar part has been extracted: the names (relative to PGDATA) it wrote."""

    part: int
    name: str
    files: tuple[str, ...]


def named_error(name: str, msg: str) -> str:
    """``msg`` about object ``name``, naming it once (for an error chunk)."""
    return msg if name in msg else f"{name}: {msg}"


def by_part(item: Chunk) -> int:
    """Key function of keyed stages: the part number."""
    return item.part
