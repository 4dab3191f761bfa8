"""The streaming tar reader agrees with tarfile on what tarfile and Go-style writers make."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from walg.errors import IntegrityError
from walg.stages.tarstream import TarStream

LONG = "base/" + "d" * 120 + "/" + "f" * 90


def build(fmt: int, members: list[tuple[str, bytes | str | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o640
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def read_all(data: bytes, skip_bodies: bool = False) -> list[tuple[str, bytes, int, str]]:
    tar = TarStream(io.BufferedReader(io.BytesIO(data)), "t.tar")  # type: ignore[arg-type]
    seen = []
    for m in tar.members():
        body = b""
        if m.isfile() and not skip_bodies:
            buf = bytearray(m.size)
            view, got = memoryview(buf), 0
            while got < m.size:
                got += tar.body.readinto(view[got:])  # type: ignore[union-attr]
            body = bytes(buf)
        seen.append((m.name, body, m.mode, m.linkname))
    return seen


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_members_and_bodies_match_tarfile(fmt: int) -> None:
    """Names (long ones too, where the format allows), bodies, modes and links are read."""
    long_ok = fmt != tarfile.USTAR_FORMAT
    members: list[tuple[str, bytes | str | None]] = [
        ("/base", None),
        ("/base/1/1259", os.urandom(70_000)),
        ("/empty", b""),
        ("/link", "/target/of/link"),
    ]
    if long_ok:
        members += [("/" + LONG, b"long"), ("/longlink", "/" + LONG)]
    seen = read_all(build(fmt, members))
    assert [s[0] for s in seen] == [m[0] for m in members]
    for (name, content), (_, body, mode, link) in zip(members, seen, strict=True):
        if isinstance(content, bytes):
            assert body == content and mode == 0o640, name
        elif isinstance(content, str):
            assert link == content


def test_unread_bodies_are_skipped() -> None:
    """A member whose body the caller does not read is skipped, and the next one parses."""
    data = build(tarfile.PAX_FORMAT, [("/a", b"x" * 5000), ("/b", b"y" * 3)])
    assert [s[0] for s in read_all(data, skip_bodies=True)] == ["/a", "/b"]


def test_truncated_stream_is_an_integrity_error() -> None:
    """A stream cut inside a member's data is reported, not taken as a short file."""
    data = build(tarfile.PAX_FORMAT, [("/a", os.urandom(100_000))])
    with pytest.raises(IntegrityError, match="ends"):
        read_all(data[:50_000])


def test_garbage_is_an_integrity_error() -> None:
    """Bytes that are not a tar header fail with the object's name."""
    with pytest.raises(IntegrityError, match=r"t\.tar is not a valid tar stream"):
        read_all(b"\x07" * 1024)
