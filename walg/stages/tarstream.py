"""A streaming tar reader that hands file bodies to the caller without copying them.

tarfile's stream mode ("r|") reads in 10 KiB records and joins and slices bytes for every
read, which costs more than decompressing on a restore. This reader parses headers with
``tarfile.TarInfo.frombuf`` (ustar, GNU and v7 headers, checksums, base-256 numbers),
applies PAX extended headers and GNU long names itself, and lets the caller read each
member's body straight from the stream with ``readinto``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from walg.errors import IntegrityError
from walg.sizes import CHUNK

__all__ = ["Member", "TarStream"]

_BLOCK = 512


@dataclass
class Member:
    """One tar member: ``read_body`` must be called (or the body skipped) before the next."""

    name: str
    kind: bytes  # tarfile.REGTYPE, DIRTYPE, SYMTYPE, ...
    size: int
    mode: int
    mtime: float
    linkname: str

    def isfile(self) -> bool:
        return self.kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)

    def isdir(self) -> bool:
        return self.kind == tarfile.DIRTYPE

    def issym(self) -> bool:
        return self.kind == tarfile.SYMTYPE


class _Body:
    """The body of the current member, readable with readinto up to its size."""

    def __init__(self, stream: Any, size: int) -> None:
        self._stream = stream
        self.left = size

    def readinto(self, buffer: memoryview) -> int:
        if self.left <= 0:
            return 0
        view = buffer[: min(len(buffer), self.left)]
        n = int(self._stream.readinto(view))
        if n == 0:
            raise IntegrityError("the tar stream ends inside a member's data")
        self.left -= n
        return n


class TarStream:
    """Iterate the members of a tar stream read from ``stream`` (needs ``readinto``)."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream = stream
        self._name = name
        self.body: _Body | None = None

    def members(self) -> Iterator[Member]:
        pending: dict[str, str] = {}
        while True:
            block = self._read_exact(_BLOCK, allow_eof=True)
            if block is None or block == bytes(_BLOCK):
                return  # end-of-archive (two zero blocks; the second is not needed)
            info = self._parse(block)
            if info.type in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                self._extended(info, pending)
                continue
            if info.type == tarfile.XGLTYPE:  # global PAX header: nothing we use
                self._skip(info.size)
                continue
            member = self._member(info, pending)
            pending = {}
            self.body = _Body(self._stream, member.size if member.isfile() else 0)
            yield member
            self._finish_body()
            self._pad(member.size if member.isfile() else 0)

    def _parse(self, block: bytes) -> tarfile.TarInfo:
        try:
            return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            raise IntegrityError(f"{self._name} is not a valid tar stream: {err}") from err

    def _extended(self, info: tarfile.TarInfo, pending: dict[str, str]) -> None:
        data = self._read_exact(info.size)
        assert data is not None
        self._pad(info.size)
        if info.type == tarfile.GNUTYPE_LONGNAME:
            pending["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type == tarfile.GNUTYPE_LONGLINK:
            pending["linkpath"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        else:
            pending.update(_pax_records(data, self._name))

    def _member(self, info: tarfile.TarInfo, pending: dict[str, str]) -> Member:
        size = int(pending.get("size", info.size))
        mtime = float(pending.get("mtime", info.mtime))
        return Member(
            name=pending.get("path", info.name),
            kind=info.type,
            size=size,
            mode=info.mode,
            mtime=mtime,
            linkname=pending.get("linkpath", info.linkname),
        )

    def _finish_body(self) -> None:
        if self.body is not None and self.body.left:
            self._skip(self.body.left)
        self.body = None

    def _pad(self, size: int) -> None:
        self._skip(-size % _BLOCK)

    def _skip(self, count: int) -> None:
        while count > 0:
            data = self._stream.read(min(count, CHUNK))
            if not data:
                raise IntegrityError(f"{self._name}: the tar stream ends early")
            count -= len(data)

    def _read_exact(self, count: int, allow_eof: bool = False) -> bytes | None:
        data = self._stream.read(count)
        if not data and allow_eof:
            return None
        while len(data) < count:
            more = self._stream.read(count - len(data))
            if not more:
                raise IntegrityError(f"{self._name}: the tar stream ends inside a header")
            data += more
        return bytes(data)


def _pax_records(data: bytes, name: str) -> dict[str, str]:
    """Parse PAX records ``"<len> <key>=<value>\\n"``."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError as err:
            raise IntegrityError(f"{name}: malformed PAX header") from err
        if space < 0 or length <= 0:
            raise IntegrityError(f"{name}: malformed PAX header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records
