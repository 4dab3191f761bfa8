"""The items that flow through the backup and restore graphs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Chunk", "PartDone", "by_part"]


@dataclass
class Chunk:
    """A piece of one stored object's byte stream (a tar part), in order.

    ``part`` routes every chunk of one object to the same worker of a keyed stage;
    ``seq`` numbers them from 0; the chunk with ``last`` ends the object and may carry
    ``meta`` (what the producer knows about the object, e.g. the files in a tar part).
    """

    part: int
    name: str
    seq: int
    data: bytes | bytearray
    last: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PartDone:
    """An object has been handled completely (stored, or extracted)."""

    part: int
    name: str
    stored_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)


def by_part(item: Chunk) -> int:
    """Key function of keyed stages: the part number."""
    return item.part
