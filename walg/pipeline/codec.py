"""Turn items into a small pickled header plus large raw buffers, and back.

Items crossing a channel are pickled (protocol 5), except that large ``bytes``, ``bytearray``
and ``memoryview`` objects found anywhere inside them are taken out of band: the header
refers to them by index and the channel copies their memory directly, once on each side,
instead of copying them into and out of a pickle stream.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_BUFFERS", "OUT_OF_BAND_MIN", "decode", "encode"]

OUT_OF_BAND_MIN = 8192
"""Byte strings at least this long travel out of band."""

MAX_BUFFERS = 64
"""At most this many buffers per item travel out of band; the rest go in the pickle."""

_BYTES, _BYTEARRAY = 0, 1


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, buffers: list[memoryview]) -> None:
        super().__init__(file, protocol=5)
        self._buffers = buffers

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is bytes or kind is bytearray or kind is memoryview:
            if len(self._buffers) >= MAX_BUFFERS:
                return None if kind is not memoryview else self._take(obj, _BYTES)
            view = memoryview(obj)
            if view.nbytes >= OUT_OF_BAND_MIN or kind is memoryview:
                return self._take(view, _BYTEARRAY if kind is bytearray else _BYTES)
        return None

    def _take(self, obj: Any, kind: int) -> tuple[int, int]:
        view = memoryview(obj)
        if not view.c_contiguous or view.ndim != 1 or view.itemsize != 1:
            view = memoryview(view.tobytes())
        self._buffers.append(view)
        return (len(self._buffers) - 1, kind)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, buffers: Sequence[bytes]) -> None:
        super().__init__(file)
        self._buffers = buffers

    def persistent_load(self, pid: Any) -> Any:
        index, kind = pid
        data = self._buffers[index]
        if kind == _BYTEARRAY:
            return bytearray(data)
        return data if type(data) is bytes else bytes(data)


def encode(item: Any) -> tuple[bytes, list[memoryview]]:
    """Pickle ``item``; return the header and the out-of-band buffers it refers to."""
    buffers: list[memoryview] = []
    out = io.BytesIO()
    _Pickler(out, buffers).dump(item)
    return out.getvalue(), buffers


def decode(header: bytes, buffers: Sequence[bytes]) -> Any:
    """Rebuild the item that :func:`encode` split into ``header`` and ``buffers``."""
    return _Unpickler(io.BytesIO(header), buffers).load()
