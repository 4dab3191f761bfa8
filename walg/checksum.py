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
        # The C implementation takes only immutable bytes; copying a view first still runs
        # at ~16 GB/s here (zlib.crc32 on the view: ~3.7 GB/s).
        if type(data) is not bytes:
            data = bytes(data)
        self.value = google_crc32c.extend(self.value, data)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"
