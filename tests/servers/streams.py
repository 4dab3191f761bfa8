"""Streams for storage tests and benchmarks: large objects made on the fly."""

from __future__ import annotations

import hashlib
import io

__all__ = ["PatternStream", "pattern_digest"]


class PatternStream(io.RawIOBase):
    """A non-seekable stream of ``size`` bytes repeating a 64 KiB block derived from
    ``seed``, produced as it is read (so a 1 GB object costs no memory)."""

    def __init__(self, size: int, seed: bytes = b"walg") -> None:
        super().__init__()
        self.left = size
        self.block = hashlib.sha256(seed).digest() * 2048
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self.block) - self.offset)
        buffer[:n] = self.block[self.offset : self.offset + n]
        self.offset = (self.offset + n) % len(self.block)
        self.left -= n
        return n


def pattern_digest(size: int, seed: bytes = b"walg") -> str:
    """sha256 of what ``PatternStream(size, seed)`` yields."""
    digest = hashlib.sha256()
    stream = PatternStream(size, seed)
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
