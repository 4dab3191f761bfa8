"""Sizes shared by every layer (layer 0: imports nothing of walg)."""

from __future__ import annotations

from typing import Final

__all__ = ["CHUNK"]

CHUNK: Final = 1 << 20
"""1 MiB: the unit in which walg streams bytes (reads of local files and stored objects,
compression and encryption input, tar members, pipeline items). Large enough that
per-call overhead vanishes, small enough that a few per worker bound memory."""
