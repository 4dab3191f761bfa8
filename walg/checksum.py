"""CRC-32C of file contents, to prove after a restore that every byte came back.

google-crc32c (a dependency of google-cloud-storage) computes it at ~12 GB/s here, far
faster than sha256 (~1.4 GB/s), and it is a fine detector of corruption in storage.
"""

from __future__ import annotations

import google_crc32c

__all__ = ["Crc32c"]


class Crc32c:
    """An incremental CRC-32C."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # the C implementation wants a read-only buffer; a read-only view costs no copy
        self.value = google_crc32c.extend(self.value, memoryview(data).toreadonly())

    def hexdigest(self) -> str:
        return f"{self.value:08x}"
