"""Item encoding: large byte strings travel out of band, everything round-trips."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from walg.pipeline import codec

leaves = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.binary(min_size=codec.OUT_OF_BAND_MIN, max_size=codec.OUT_OF_BAND_MIN + 100),
    st.builds(
        bytearray, st.binary(min_size=codec.OUT_OF_BAND_MIN, max_size=codec.OUT_OF_BAND_MIN + 10)
    ),
)
items = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=20,
)


def roundtrip(item: Any) -> Any:
    header, buffers = codec.encode(item)
    return codec.decode(header, [bytes(b) for b in buffers])


@given(items)
def test_roundtrip(item: Any) -> None:
    """decode(encode(x)) == x for nested plain data with small and large byte strings."""
    assert roundtrip(item) == item


def test_large_bytes_go_out_of_band_and_keep_their_type() -> None:
    """Large bytes and bytearray leave the pickle; their types survive the trip."""
    big, arr = b"x" * 100_000, bytearray(b"y" * 50_000)
    header, buffers = codec.encode({"data": big, "arr": arr, "small": b"z"})
    assert len(header) < 200
    assert sorted(b.nbytes for b in buffers) == [50_000, 100_000]
    out = codec.decode(header, [bytes(b) for b in buffers])
    assert type(out["data"]) is bytes and type(out["arr"]) is bytearray
    assert out == {"data": big, "arr": arr, "small": b"z"}


def test_memoryview_arrives_as_bytes() -> None:
    """A memoryview (not picklable by itself) travels as its bytes."""
    view = memoryview(b"abc" * 10)[3:9]
    assert roundtrip(view) == b"abcabc"


def test_buffer_count_is_capped() -> None:
    """Past MAX_BUFFERS, further large byte strings are pickled in band, still correct."""
    chunks = [bytes([i % 256]) * codec.OUT_OF_BAND_MIN for i in range(codec.MAX_BUFFERS + 5)]
    header, buffers = codec.encode(chunks)
    assert len(buffers) == codec.MAX_BUFFERS
    assert codec.decode(header, [bytes(b) for b in buffers]) == chunks
