"""CRC-32C of file contents, to prove after a restore that every byte came back.

google-crc32c computes it at ~12 GB/s here, far faster than sha256 (~1.4 GB/s), and it is
a fine detector of corruption in storage. Its Python function takes only immutable
``bytes``; the backup's read buffers are bytearrays, and copying each 1 MiB into a bytes
object first cost the tar stage about 0.25 CPU-s/GB. So a buffer that is not ``bytes`` is
passed by address to the library's C function ``crc32c_extend`` (the shared library that
google-crc32c's wheel ships and its extension links to), through ctypes, which releases
the GIL for the call. Where that library cannot be found, the copy is made as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import google_crc32c

__all__ = ["Crc32c", "prepare"]

_extend_in_place: Callable[[int, Any], int] | None = None
_looked_up = False


def _in_place() -> Callable[[int, Any], int] | None:
    """``crc32c_extend`` of google-crc32c's shared library, callable on a writable buffer
    without a copy; None if the library is not there (e.g. a build linked statically)."""
    global _extend_in_place, _looked_up
    if _looked_up:
        return _extend_in_place
    _looked_up = True
    libs = os.path.join(os.path.dirname(google_crc32c.__file__), "..", "google_crc32c.libs")
    try:
        found = sorted(name for name in os.listdir(libs) if name.startswith("libcrc32c"))
    except OSError:
        return None
    if not found:
        return None
    import ctypes

    try:
        function = ctypes.CDLL(os.path.join(libs, found[0])).crc32c_extend
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
    function.restype = ctypes.c_uint32
    char_array = ctypes.c_char

    def extend(crc: int, data: Any) -> int:
        view = memoryview(data)
        n = view.nbytes
        if not n:
            return crc
        return int(function(crc, ctypes.addressof((char_array * n).from_buffer(view)), n))

    _extend_in_place = extend
    return extend


def prepare() -> None:
    """Find the shared library now: called in a parent process before it forks its
    workers, which then inherit it instead of each loading it."""
    _in_place()


class Crc32c:
    """An incremental CRC-32C."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            extend = _in_place()
            if extend is not None and not memoryview(data).readonly:
                self.value = extend(self.value, data)
                return
            data = bytes(data)
        self.value = google_crc32c.extend(self.value, data)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"
