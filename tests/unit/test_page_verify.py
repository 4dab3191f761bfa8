"""Page checksum verification while reading relation files (backup-push --verify)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from walg.postgres.pages import BLOCK_SIZE, RELSEG_SIZE, page_checksum
from walg.postgres.verify import PageVerifier, corrupt_blocks, segment_number

SINCE = 0x9000000


def page(lsn: int, blkno: int, fill: int, good: bool = True) -> bytes:
    """A valid page of block ``blkno`` with a correct checksum (wrong if not ``good``)."""
    body = bytearray(
        struct.pack("<IIHHHHHHI", lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, 28, 8000, 8192, 8196, 0).ljust(
            BLOCK_SIZE, bytes([fill])
        )
    )
    struct.pack_into("<H", body, 8, page_checksum(bytes(body), blkno))
    if not good:
        body[4000] ^= 0x01  # a flipped bit after the checksum was computed
    return bytes(body)


def test_segment_numbers() -> None:
    assert segment_number("base/5/16384") == 0
    assert segment_number("base/5/16384.3") == 3


def test_flipped_bit_is_found_and_other_pages_pass() -> None:
    data = page(SINCE - 5, 0, 1) + page(SINCE - 5, 1, 2, good=False) + page(SINCE - 5, 2, 3)
    assert corrupt_blocks(data, 0, SINCE) == [1]


def test_checksums_use_the_block_number_in_the_relation() -> None:
    """Block 2 of segment 1 is relation block 131074: a page checksummed as block 2 fails."""
    first = RELSEG_SIZE
    data = page(SINCE - 5, first, 1) + page(SINCE - 5, 1, 2)
    assert corrupt_blocks(data, first, SINCE) == [first + 1]


def test_recent_pages_are_not_checked_and_new_pages_must_be_zero() -> None:
    torn = page(SINCE + 1, 0, 7, good=False)  # written during the backup: WAL rewrites it
    zero = bytes(BLOCK_SIZE)
    dirty_new = bytes(20) + b"\x01" + bytes(BLOCK_SIZE - 21)  # pd_upper 0 but not all zeros
    assert corrupt_blocks(torn + zero + dirty_new, 0, SINCE) == [2]


def test_garbage_header_fails() -> None:
    garbage = b"\xff" * BLOCK_SIZE
    assert corrupt_blocks(garbage, 0, SINCE) == [0]


@given(st.lists(st.integers(1, 3 * BLOCK_SIZE), min_size=1, max_size=8))
def test_verifier_gives_the_same_answer_whatever_the_pieces(cuts: list[int]) -> None:
    pages = [page(SINCE - 5, RELSEG_SIZE + i, i, good=i % 3 != 1) for i in range(6)]
    data = b"".join(pages)
    verifier = PageVerifier("base/5/16384.1", SINCE)
    offset = 0
    for cut in cuts:
        verifier.feed(data[offset : offset + cut])
        offset += cut
    verifier.feed(data[offset:])
    assert verifier.bad == [1, 4]
    verifier.reset()
    verifier.feed(data[:BLOCK_SIZE])
    assert verifier.bad == []
