"""A push-style tar reader: bytes are fed in as they arrive, in pieces of any size, and
each member's body is handed on as views of those same pieces (no thread, no copy).

:class:`~walg.stages.tarstream.TarStream` pulls from a stream, which a stage that receives
chunks can only serve from a second thread through a queue; a sink that only looks at the
bytes (backup-verify's) does better with this one. Headers are parsed as TarStream parses
them (``tarfile.TarInfo.frombuf``; PAX extended headers, GNU long names).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from typing import Protocol

from walg.errors import IntegrityError
from walg.stages.tarstream import Member, _pax_records  # the one PAX record parser

__all__ = ["BodySink", "TarFeed"]

_BLOCK = 512
_EXTENDED = (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class BodySink(Protocol):
    """Takes one member's body: ``update`` with each piece, ``end`` once it is whole."""

    def update(self, data: memoryview) -> None: ...

    def end(self) -> None: ...


class TarFeed:
    """Parse a tar stream fed with :meth:`feed`; ``begin(member)`` is called at each member
    and returns the sink of its body (None: skip it). :meth:`finish` checks the stream
    ended where a tar may end. Malformed input raises IntegrityError naming ``name``."""

    def __init__(self, name: str, begin: Callable[[Member], BodySink | None]) -> None:
        self._name = name
        self._begin = begin
        self._acc = bytearray()  # a header, or an extended header's data, being gathered
        self._need = _BLOCK
        self._extended: tarfile.TarInfo | None = None
        self._pending: dict[str, str] = {}
        self._sink: BodySink | None = None
        self._body = 0  # bytes of the current body still to come
        self._skip = 0  # padding (or an ignored body) still to come
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view and not self.done:
            if self._body:
                n = min(self._body, len(view))
                if self._sink is not None:
                    self._sink.update(view[:n])
                self._body -= n
                view = view[n:]
                if not self._body:
                    self._end_body()
            elif self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
            else:
                n = min(self._need - len(self._acc), len(view))
                self._acc += view[:n]
                view = view[n:]
                if len(self._acc) == self._need:
                    self._gathered()

    def finish(self) -> None:
        """The stream has ended: raise IntegrityError if it ended inside a member."""
        if self.done or (not self._acc and not self._body and not self._skip):
            return
        where = "a member's data" if self._body else "a header"
        raise IntegrityError(f"{self._name}: the tar stream ends inside {where}")

    def _gathered(self) -> None:
        data, self._acc = bytes(self._acc), bytearray()
        if self._extended is not None:
            self._extended_data(self._extended, data)
            self._extended, self._need = None, _BLOCK
            return
        if data == bytes(_BLOCK):
            self.done = True  # end-of-archive
            return
        try:
            info = tarfile.TarInfo.frombuf(data, "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            raise IntegrityError(f"{self._name} is not a valid tar stream: {err}") from err
        if info.type in _EXTENDED:
            self._extended, self._need = info, info.size
            if info.size == 0:
                self._gathered()
        elif info.type == tarfile.XGLTYPE:  # global PAX header: nothing we use
            self._skip = info.size + _padding(info.size)
        else:
            self._member(info)

    def _extended_data(self, info: tarfile.TarInfo, data: bytes) -> None:
        self._skip = _padding(info.size)
        if info.type == tarfile.GNUTYPE_LONGNAME:
            self._pending["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type == tarfile.GNUTYPE_LONGLINK:
            self._pending["linkpath"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        else:
            self._pending.update(_pax_records(data, self._name))

    def _member(self, info: tarfile.TarInfo) -> None:
        pending, self._pending = self._pending, {}
        member = Member(
            name=pending.get("path", info.name),
            kind=info.type,
            size=int(pending.get("size", info.size)),
            mode=info.mode,
            mtime=float(pending.get("mtime", info.mtime)),
            linkname=pending.get("linkpath", info.linkname),
        )
        self._sink = self._begin(member)
        size = member.size if member.isfile() else 0
        self._body = size
        self._skip = _padding(size)
        if not size:
            self._end_body()

    def _end_body(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.end()


def _padding(size: int) -> int:
    return -size % _BLOCK
