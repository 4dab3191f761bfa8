"""The delta path through the stages: the tar composer stores increments of relation files,
the extractor applies them onto the files an older backup restored."""

from __future__ import annotations

import dataclasses
import os
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_extract import extract, tar_bytes  # type: ignore[import-not-found]
from test_tar_writer import Ctx  # type: ignore[import-not-found]

from walg.errors import IntegrityError
from walg.format.chain import Selection
from walg.format.increment import MAGIC, increment_header
from walg.format.meta import FileDescription, FilesMetadata
from walg.format.scan import Entry, Part
from walg.postgres.pages import BLOCK_SIZE
from walg.stages.chunks import StoredFile
from walg.stages.tar_writer import TarWriter

BASE_LSN = 0x5000000


def page(lsn: int, fill: int, upper: int = 8000) -> bytes:
    header = struct.pack("<IIHHHHHHI", lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, 28, upper, 8192, 8196, 0)
    return header + bytes([fill]) * (BLOCK_SIZE - len(header))


def compose(entries: list[Entry]) -> tuple[bytes, dict[str, StoredFile]]:
    """The tar stream of one part of ``entries`` and what it reports of its files."""
    writer = TarWriter("")
    writer.open(Ctx())  # type: ignore[arg-type]
    chunks = list(writer.process(Part(1, tuple(entries))))
    assert chunks[-1].report is not None
    return b"".join(bytes(c.data) for c in chunks), chunks[-1].report.files


def files_metadata(described: dict[str, StoredFile]) -> FilesMetadata:
    return FilesMetadata(
        {
            name: FileDescription(
                datetime.fromtimestamp(info.mtime, UTC),
                is_incremented=info.incremented,
                crc32c=info.crc32c,
            )
            for name, info in described.items()
        }
    )


def relation(path: Path, pages: list[bytes]) -> Entry:
    path.write_bytes(b"".join(pages))
    st = path.stat()
    return Entry(
        "base/5/16384", str(path), "file", st.st_size, st.st_mtime, 0o600, since_lsn=BASE_LSN
    )


def test_increment_round_trip_through_the_stages(tmp_path: Path) -> None:
    """Old pages stay as the base restored them; changed, new and appended pages arrive;
    the restored file equals the file that was backed up, byte for byte."""
    old = [page(BASE_LSN - 10, i) for i in range(6)]
    new = [old[0], page(BASE_LSN + 1, 90), old[2], page(0, 0, upper=0), old[4], old[5]]
    new += [page(BASE_LSN + 7, 91)]  # the relation grew
    entry = relation(tmp_path / "now", new)
    data, described = compose([entry])
    info = described["/base/5/16384"]
    assert info.incremented is True
    assert info.size == len(increment_header(len(b"".join(new)), [1, 3, 6])) + 3 * BLOCK_SIZE

    target = tmp_path / "restore"
    (target / "base" / "5").mkdir(parents=True)
    (target / "base" / "5" / "16384").write_bytes(b"".join(old))  # what the base restored
    extract(target, data, files_metadata(described))
    assert (target / "base" / "5" / "16384").read_bytes() == b"".join(new)


def test_relation_that_shrank_is_cut_to_its_size(tmp_path: Path) -> None:
    old = [page(BASE_LSN - 10, i) for i in range(8)]
    new = old[:3]
    data, described = compose([relation(tmp_path / "now", new)])
    target = tmp_path / "restore"
    (target / "base" / "5").mkdir(parents=True)
    (target / "base" / "5" / "16384").write_bytes(b"".join(old))
    extract(target, data, files_metadata(described))
    assert (target / "base" / "5" / "16384").read_bytes() == b"".join(new)


def test_invalid_page_or_odd_size_sends_the_file_whole(tmp_path: Path) -> None:
    garbage = page(BASE_LSN - 10, 1)[:12] + b"\xff" * (BLOCK_SIZE - 12)
    for name, content in (("bad", page(BASE_LSN - 10, 1) + garbage), ("odd", b"x" * 1000)):
        entry = relation(tmp_path / name, [content])
        data, described = compose([entry])
        assert not described["/base/5/16384"].incremented
        target = tmp_path / f"restore-{name}"
        extract(target, data, files_metadata(described))
        assert (target / "base" / "5" / "16384").read_bytes() == content


def test_file_without_since_lsn_is_stored_whole(tmp_path: Path) -> None:
    entry = dataclasses.replace(relation(tmp_path / "f", [page(BASE_LSN - 1, 3)]), since_lsn=None)
    _, described = compose([entry])
    assert not described["/base/5/16384"].incremented
    assert described["/base/5/16384"].size == BLOCK_SIZE


def increment_member(blocks: list[int], size: int) -> bytes:
    return increment_header(size, blocks) + b"".join(page(BASE_LSN + 1, 9) for _ in blocks)


def marked(name: str) -> FilesMetadata:
    return FilesMetadata({name: FileDescription(datetime.now(UTC), is_incremented=True)})


def test_increment_without_its_base_file_fails_clearly(tmp_path: Path) -> None:
    data = tar_bytes([("/base/5/16384", increment_member([0], BLOCK_SIZE))])
    with pytest.raises(IntegrityError, match="base file is missing"):
        extract(tmp_path, data, marked("/base/5/16384"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"wi2U" + increment_member([0], BLOCK_SIZE)[4:], "bad magic"),
        (MAGIC + struct.pack("<QI", BLOCK_SIZE, 1) + struct.pack("<I", 5), "beyond its file size"),
        (increment_member([0], BLOCK_SIZE)[:-100], "cut short"),
        (increment_member([0], BLOCK_SIZE) + b"extra", "longer than its increment header"),
    ],
)
def test_damaged_increments_fail_clearly(tmp_path: Path, body: bytes, message: str) -> None:
    (tmp_path / "base" / "5").mkdir(parents=True)
    (tmp_path / "base" / "5" / "16384").write_bytes(page(1, 1))
    data = tar_bytes([("/base/5/16384", body)])
    with pytest.raises(IntegrityError, match=message):
        extract(tmp_path, data, marked("/base/5/16384"))


def test_selection_extracts_only_wanted_members(tmp_path: Path) -> None:
    """From an older backup of a chain, only the files the plan takes are written."""
    data = tar_bytes([("/base", None), ("/base/a", b"aaa"), ("/base/b", b"bbb"), ("/link", "->x")])
    select = Selection("old", whole=frozenset({"base/b"}))
    names = extract(tmp_path, data, select=select)
    assert names == ["base/b"]
    assert sorted(os.listdir(tmp_path / "base")) == ["b"]
    assert not os.path.lexists(tmp_path / "link")
