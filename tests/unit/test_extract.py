"""The extractor writes what the tar says, and nothing outside the target."""

from __future__ import annotations

import io
import os
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from walg.checksum import Crc32c
from walg.errors import IntegrityError
from walg.format.chain import Selection
from walg.format.meta import FileDescription, FilesMetadata
from walg.pipeline import WorkerContext
from walg.stages.chunks import Chunk
from walg.stages.extract import Extractor, destination, member_name, symlink_action


def tar_bytes(members: list[tuple[str, Any]]) -> bytes:
    """Members: (name, bytes) for files, (name, None) for dirs, (name, '->target') links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content[2:]
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def extract(target: Path, data: bytes, files: FilesMetadata | None = None,
            tablespaces: dict[str, str] | None = None,
            select: Selection | None = None) -> list[str]:
    stage = Extractor(str(target), tablespaces or {}, files, select)
    stage.open(WorkerContext("extract", 0, 1, lambda *a: None, time.monotonic))
    try:
        chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        out = []
        for seq, piece in enumerate(chunks):
            out += list(stage.process(Chunk(1, "part_001.tar", seq, piece, seq == len(chunks) - 1)))
        return list(out[0].files)
    finally:
        stage.close()


def test_files_and_directories_are_restored(tmp_path: Path) -> None:
    """Names with and without WAL-G's leading '/' land inside the target, byte-exact."""
    data = tar_bytes([("/base", None), ("/base/1/1259", b"x" * 5000), ("PG_VERSION", b"15\n")])
    names = extract(tmp_path, data)
    assert names == ["base", "base/1/1259", "PG_VERSION"]
    assert (tmp_path / "base/1/1259").read_bytes() == b"x" * 5000
    assert (tmp_path / "PG_VERSION").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["../evil", "/base/../../evil", "a//b", "./x"])
def test_escaping_names_are_refused(tmp_path: Path, name: str) -> None:
    """A member whose name climbs out of the target is refused."""
    target = tmp_path / "restore"
    target.mkdir()
    with pytest.raises(IntegrityError, match="outside the target"):
        extract(target, tar_bytes([(name, b"pwned")]))
    assert not (tmp_path / "evil").exists()


def test_writing_through_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    """A symlink member cannot be used to write a later member outside the target."""
    target, outside = tmp_path / "restore", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    extract(target, tar_bytes([("/trick", f"->{outside}"), ("/trick/file", b"pwned")]))
    assert list(outside.iterdir()) == []  # the link was not made: the file is inside
    data = tar_bytes([("/base", None), ("/inner", "->base"), ("/inner/file", b"x")])
    with pytest.raises(IntegrityError, match="through the symlink"):
        extract(tmp_path / "other", data)


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    """A file whose CRC-32C differs from the backup's metadata fails the restore."""
    when = datetime.now(UTC)
    good = Crc32c()
    good.update(b"expected")
    files = FilesMetadata({
        "/a": FileDescription(when, crc32c=good.hexdigest()),
        "/b": FileDescription(when, crc32c="00000000"),
    })
    extract(tmp_path / "ok", tar_bytes([("/a", b"expected")]), files)
    with pytest.raises(IntegrityError, match=r"b from part_001\.tar does not match its checksum"):
        extract(tmp_path / "bad", tar_bytes([("/b", b"tampered")]), files)


def test_tablespace_files_go_to_their_location(tmp_path: Path) -> None:
    """pg_tblspc/<oid>/... members are written into the tablespace's location."""
    target, location = tmp_path / "restore", tmp_path / "ts"
    (target / "pg_tblspc").mkdir(parents=True)
    location.mkdir()
    os.symlink(location, target / "pg_tblspc" / "16400")
    extract(target, tar_bytes([("/pg_tblspc/16400/PG_15/1/2", b"t")]),
            tablespaces={"16400": str(location)})
    assert (location / "PG_15" / "1" / "2").read_bytes() == b"t"


def test_not_a_tar_is_an_integrity_error(tmp_path: Path) -> None:
    """Garbage instead of a tar stream gives a clear IntegrityError naming the part."""
    with pytest.raises(IntegrityError, match=r"part_001\.tar is not a valid tar stream"):
        extract(tmp_path, b"\x01" * 3000)


def test_pure_helpers() -> None:
    """member_name strips the leading '/'; destination maps tablespaces."""
    assert member_name("/base/1/2") == "base/1/2"
    assert member_name("base/") == "base"
    assert destination("pg_tblspc/5/x", "/r", {"5": "/ts"}) == ("/ts", "/ts/x")
    assert destination("pg_tblspc/6/x", "/r", {"5": "/ts"}) == ("/r", "/r/pg_tblspc/6/x")


def test_parts_extracted_at_once_by_one_worker_do_not_mix(tmp_path: Path) -> None:
    """Two parts whose chunks interleave at one extractor (each in its own thread) are both
    restored byte-exact: nothing is shared between their threads."""
    when = datetime.now(UTC)
    parts, files, bodies = {}, {}, {}
    for number in (1, 2):
        members = []
        for i in range(3):
            body = os.urandom(3 * 1024 * 1024 + 4096 * i + number)
            crc = Crc32c()
            crc.update(body)
            files[f"/p{number}/f{i}"] = FileDescription(when, crc32c=crc.hexdigest())
            members.append((f"/p{number}/f{i}", body))
            bodies[f"p{number}/f{i}"] = body
        parts[number] = tar_bytes(members)
    stage = Extractor(str(tmp_path), {}, FilesMetadata(files))
    ctx = WorkerContext("extract", 0, 1, lambda *a: None, time.monotonic)
    stage.open(ctx)
    size = 256 * 1024
    pieces = {n: [d[i : i + size] for i in range(0, len(d), size)] for n, d in parts.items()}
    done = []
    try:
        for seq in range(max(len(p) for p in pieces.values())):
            for number, chunks in pieces.items():
                if seq < len(chunks):
                    last = seq == len(chunks) - 1
                    chunk = Chunk(number, f"part_{number}", seq, chunks[seq], last)
                    done += list(stage.process(chunk))
    finally:
        stage.close()
    assert sorted(d.part for d in done) == [1, 2]
    for name, body in bodies.items():
        assert (tmp_path / name).read_bytes() == body, name


def test_size_mismatch_names_the_file(tmp_path: Path) -> None:
    """A member shorter or longer than the size the backup stored fails before it is written."""
    files = FilesMetadata({"/a": FileDescription(datetime.now(UTC), size=8)})
    extract(tmp_path / "ok", tar_bytes([("/a", b"12345678")]), files)
    with pytest.raises(IntegrityError, match=r"a from part_001\.tar has 3 bytes, but .* 8"):
        extract(tmp_path / "bad", tar_bytes([("/a", b"123")]), files)
    assert not (tmp_path / "bad" / "a").exists()


def test_symlinked_pg_wal_becomes_an_empty_directory(tmp_path: Path) -> None:
    """pg_wal stored as a link to another WAL directory is restored as an empty directory."""
    target, wal = tmp_path / "restore", tmp_path / "production_wal"
    wal.mkdir()
    names = extract(target, tar_bytes([("/pg_wal", f"->{wal}"), ("/pg_xlog", "->../wal")]))
    assert names == ["pg_wal", "pg_xlog"]
    for name in names:
        assert (target / name).is_dir() and not (target / name).is_symlink()
        assert list((target / name).iterdir()) == []
        assert (target / name).stat().st_mode & 0o777 == 0o700


def test_links_leading_outside_are_skipped_and_inside_ones_kept(tmp_path: Path) -> None:
    """No link leading outside the target is created; links within it are restored."""
    target = tmp_path / "restore"
    data = tar_bytes([
        ("/postgresql.conf", "->/etc/postgresql/15/main/postgresql.conf"),
        ("/base/escape", "->../../outside"),
        ("/base/inside", "->../global"),
        ("/pg_tblspc/16400", "->/old/tablespace"),
    ])
    names = extract(target, data)
    assert names == ["postgresql.conf", "base/escape", "base/inside", "pg_tblspc/16400"]
    assert os.readlink(target / "base" / "inside") == "../global"
    for skipped in ("postgresql.conf", "base/escape", "pg_tblspc/16400"):
        assert not os.path.lexists(target / skipped), skipped


def test_a_mapped_tablespace_link_is_left_as_the_map_made_it(tmp_path: Path) -> None:
    """A pg_tblspc/<oid> link member of a mapped tablespace keeps the map's link."""
    target, location = tmp_path / "restore", tmp_path / "new_ts"
    (target / "pg_tblspc").mkdir(parents=True)
    location.mkdir()
    os.symlink(location, target / "pg_tblspc" / "16400")
    extract(target, tar_bytes([("/pg_tblspc/16400", "->/old/ts")]),
            tablespaces={"16400": str(location)})
    assert os.readlink(target / "pg_tblspc" / "16400") == str(location)


@pytest.mark.parametrize(
    ("name", "link", "action"),
    [
        ("pg_wal", "/elsewhere", "dir"),
        ("pg_stat_tmp", "/run/pg", "dir"),
        ("pg_tblspc/5", "/ts", "mapped"),
        ("pg_tblspc/6", "/ts", "skip"),
        ("conf", "/etc/x", "skip"),
        ("a/b", "../../x", "skip"),
        ("a/b", "../c", "link"),
        ("a/b", "c", "link"),
    ],
)
def test_symlink_action(name: str, link: str, action: str) -> None:
    """Which symlink members become directories, are skipped, or are created."""
    path = os.path.join("/r", name)
    assert symlink_action(name, link, path, "/r", {"5": "/ts"}) == action
