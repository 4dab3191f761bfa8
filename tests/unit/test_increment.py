"""WAL-G's increment format and the page selection of delta backups (pure functions)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walg.errors import IntegrityError
from walg.format.increment import (
    MAGIC,
    IncrementHeader,
    apply_increment,
    encode_increment,
    read_header,
    read_pages,
    select_blocks,
    select_pages,
)
from walg.postgres.pages import BLOCK_SIZE, PageKind, classify_page


def page(lsn: int, upper: int = 8000, fill: int = 0) -> bytes:
    """A page with a valid header (unless upper is 0 or bogus) and recognisable contents."""
    header = struct.pack(
        "<IIHHHHHHI", lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, 28, upper, 8192, 8192 + 4, 0
    )
    return header + bytes([fill]) * (BLOCK_SIZE - len(header))


def test_pages_changed_since_the_base_and_new_pages_are_selected() -> None:
    """Pages with pd_lsn >= the base's start LSN, and new (pd_upper == 0) pages, are sent."""
    data = page(100) + page(300) + page(200) + bytes(BLOCK_SIZE) + page(250)
    assert select_blocks(data, 200) == [1, 2, 3, 4]
    assert select_blocks(data, 301) == [3]


def test_an_invalid_page_sends_the_whole_file() -> None:
    """A page with a broken header (or a torn size) means the file goes whole."""
    broken = page(500, upper=9000)
    assert select_blocks(page(100) + broken, 50) is None
    assert select_blocks(page(100) + b"x", 50) is None
    assert select_blocks(page(0), 50) is None  # never WAL-logged: WAL-G sends it whole


def test_layout_is_walg_s() -> None:
    """Magic, uint64 size, uint32 count, uint32 block numbers, then the pages."""
    data = b"".join(bytes(x) for x in encode_increment(5 * BLOCK_SIZE, [(4, page(9, fill=7))]))
    assert data[:4] == MAGIC == b"wi1U"
    assert struct.unpack_from("<QII", data, 4) == (5 * BLOCK_SIZE, 1, 4)
    assert data[20:] == page(9, fill=7)


@given(
    blocks=st.sets(st.integers(0, 40), max_size=12),
    extra=st.integers(0, 5),
)
def test_round_trip(blocks: set[int], extra: int) -> None:
    """Whatever blocks and size, reading gives back what was written."""
    size = (max(blocks, default=0) + 1 + extra) * BLOCK_SIZE
    pages = [(b, page(1000 + b, fill=b % 251)) for b in sorted(blocks)]
    stream = io.BytesIO(b"".join(bytes(x) for x in encode_increment(size, pages)))
    header = read_header(stream)
    assert header == IncrementHeader(size, tuple(sorted(blocks)))
    assert list(read_pages(stream, header)) == pages
    assert stream.read() == b""
    assert header.length == len(stream.getvalue())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"wi2U" + bytes(12), "not a WAL-G increment"),
        (MAGIC + struct.pack("<QI", BLOCK_SIZE, 1), "cut short"),
        (MAGIC + struct.pack("<QII", BLOCK_SIZE, 1, 3), "beyond its file size"),
        (MAGIC[:3], "cut short"),
    ],
)
def test_damaged_increments_are_refused(data: bytes, message: str) -> None:
    """Wrong magic, truncation and out-of-range blocks raise IntegrityError."""
    with pytest.raises(IntegrityError, match=message):
        header = read_header(io.BytesIO(data), "base/1/2")
        list(read_pages(io.BytesIO(b""), header, "base/1/2"))


def test_apply_truncates_extends_and_writes_pages(tmp_path: Path) -> None:
    """Applying sets the recorded size (cut or extended) and writes each page at its block."""
    path = tmp_path / "16384"
    path.write_bytes(page(1, fill=1) * 4)
    apply_increment(str(path), IncrementHeader(3 * BLOCK_SIZE, (2,)), [(2, page(5, fill=9))])
    assert path.read_bytes() == page(1, fill=1) * 2 + page(5, fill=9)
    apply_increment(str(path), IncrementHeader(5 * BLOCK_SIZE, (4,)), [(4, page(6, fill=3))])
    data = path.read_bytes()
    assert len(data) == 5 * BLOCK_SIZE
    assert data[3 * BLOCK_SIZE : 4 * BLOCK_SIZE] == bytes(BLOCK_SIZE)
    assert data[4 * BLOCK_SIZE :] == page(6, fill=3)


def test_apply_without_base_file_fails_clearly(tmp_path: Path) -> None:
    """An increment whose base file was not restored is an integrity error naming it."""
    with pytest.raises(IntegrityError, match="base file is missing"):
        apply_increment(str(tmp_path / "nope"), IncrementHeader(BLOCK_SIZE, ()), [])


_HEADER = struct.Struct("<IIHHHHHHI")


@given(
    headers=st.lists(
        st.tuples(
            st.integers(0, 3),  # xlogid
            st.integers(0, 2**32 - 1),  # xrecoff
            st.sampled_from([0, 1, 7, 8]),  # flags
            st.sampled_from([0, 23, 24, 100, 8192, 9000]),  # lower
            st.sampled_from([0, 24, 100, 8000, 8192]),  # upper
            st.sampled_from([24, 8000, 8192, 9000]),  # special
            st.sampled_from([8196, 8192, 4100]),  # pagesize/version
        ),
        max_size=20,
    ),
    since=st.integers(0, 2**34),
    first=st.integers(0, 1000),
)
def test_bulk_selection_decides_like_classify_page(
    headers: list[tuple[int, ...]], since: int, first: int
) -> None:
    data = b"".join(
        _HEADER.pack(xlogid, xrecoff, 0, flags, lower, upper, special, version, 0).ljust(
            BLOCK_SIZE, b"\x01"
        )
        for xlogid, xrecoff, flags, lower, upper, special, version in headers
    )
    kinds = [
        classify_page(data[i : i + BLOCK_SIZE], since) for i in range(0, len(data), BLOCK_SIZE)
    ]
    expected: list[int] | None = [
        first + i for i, kind in enumerate(kinds) if kind in (PageKind.CHANGED, PageKind.NEW)
    ]
    if PageKind.INVALID in kinds:
        expected = None
    assert select_pages(data, since, first) == expected
