"""CRC-32C of buffers: the in-place path (google-crc32c's C function by address) agrees with
google-crc32c's own function, for bytes, bytearrays and views of any size and offset."""

from __future__ import annotations

import random

import google_crc32c
import pytest

from walg import checksum
from walg.checksum import Crc32c

SIZES = [0, 1, 7, 512, 4096, (1 << 20) + 3]


def pieces(data: bytearray, rng: random.Random) -> list[memoryview]:
    view, out, at = memoryview(data), [], 0
    while at < len(data):
        step = rng.randint(1, max(1, len(data) // 3))
        out.append(view[at : at + step])
        at += step
    return out


@pytest.mark.parametrize("size", SIZES)
def test_in_place_crc_matches_the_library(size: int) -> None:
    rng = random.Random(size)
    data = bytearray(rng.randbytes(size))
    assert checksum._in_place() is not None, "google-crc32c's shared library is found"
    whole, pieced, as_bytes = Crc32c(), Crc32c(), Crc32c()
    whole.update(data)
    for piece in pieces(data, rng):
        pieced.update(piece)
    as_bytes.update(bytes(data))
    expected = google_crc32c.value(bytes(data))
    assert whole.value == pieced.value == as_bytes.value == expected
    assert whole.hexdigest() == f"{expected:08x}"


def test_copying_fallback_when_the_library_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checksum, "_looked_up", True)
    monkeypatch.setattr(checksum, "_extend_in_place", None)
    data = bytearray(random.Random(3).randbytes(70000))
    crc = Crc32c()
    crc.update(memoryview(data)[:1000])
    crc.update(memoryview(data)[1000:])
    assert crc.value == google_crc32c.value(bytes(data))


def test_read_only_views_are_copied_not_refused() -> None:
    data = random.Random(4).randbytes(5000)
    crc = Crc32c()
    crc.update(memoryview(data)[:100])  # a read-only view of bytes
    crc.update(memoryview(bytearray(data[100:])).toreadonly())
    assert crc.value == google_crc32c.value(data)
