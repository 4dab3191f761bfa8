"""``wal-g st ls|stat|cat|get|put|rm|check`` on a directory and on S3 (moto): WAL-G's listing
format, its defaults for decrypting and decompressing, round trips, and one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import lz4.frame
import pytest
from servers.gpg import throwaway_key
from servers.logtext import untimed
from servers.s3 import PREFIX, S3Maker, make_s3_storage, moto_server

from walg.backup.storage_tools import ListEntry, format_listing, go_time, tabwrite
from walg.cli import main
from walg.crypto import looks_encrypted
from walg.storage.base import Storage
from walg.storage.file import FileStorage

__all__ = ["make_s3_storage", "moto_server"]  # fixtures

WAL = "wal_005/000000010000000000000001.lz4"
PLAIN = b"wal segment bytes " * 1000


@dataclass
class Archive:
    """A storage and the environment that points wal-g at it."""

    storage: Storage
    env: dict[str, str]


@pytest.fixture(params=["file", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Archive:
    if request.param == "file":
        store = tmp_path / "store"
        store.mkdir()
        return Archive(FileStorage(str(store)), {"WALG_FILE_PREFIX": str(store)})
    maker: S3Maker = request.getfixturevalue("make_s3_storage")
    storage = maker()
    env = {
        "WALG_S3_PREFIX": f"s3://{storage.options.bucket}/{PREFIX}",
        "AWS_ENDPOINT": maker.endpoint,
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    return Archive(storage, env)


@pytest.fixture(scope="module")
def pgp_key() -> Iterator[str]:
    """A throwaway armored private key (no passphrase)."""
    with throwaway_key("st test") as key:
        yield key


def st(archive: Archive, *argv: str, **env: str) -> int:
    return main(["st", *argv], environ={**archive.env, **env})


# -- the listing format, as Go prints it ----------------------------------------------------


def test_go_time_is_time_string() -> None:
    """Times print as Go's time.Time.String(): trailing zeros of the fraction dropped."""
    when = datetime(2025, 5, 21, 7, 17, 16, 52000, UTC)
    assert go_time(when, local=False) == "2025-05-21 07:17:16.052 +0000 UTC"
    assert go_time(when.replace(microsecond=0), local=False) == "2025-05-21 07:17:16 +0000 UTC"
    assert go_time(None, local=False) == "0001-01-01 00:00:00 +0000 UTC"
    east = datetime(2025, 5, 21, 10, 17, 16, tzinfo=timezone(timedelta(hours=3)))
    assert go_time(east, local=False) == "2025-05-21 07:17:16 +0000 UTC"


def test_listing_matches_wal_g_sample() -> None:
    """The table WAL-G's own test script shows (docker/cloudberry_tests restore_point.sh),
    with the two empty trailing columns tabwriter pads."""
    entries = [
        ListEntry(
            "obj",
            4624920,
            datetime(2025, 5, 21, 7, 17, 16, 52000, UTC),
            "000000010000000000000001.lz4",
        ),
        ListEntry(
            "obj",
            264275,
            datetime(2025, 5, 21, 7, 26, 6, 265000, UTC),
            "000000010000000000000002.lz4",
        ),
    ]
    assert format_listing(entries, local=False).splitlines() == [
        "type size    last modified                     name",
        "obj  4624920 2025-05-21 07:17:16.052 +0000 UTC 000000010000000000000001.lz4  ",
        "obj  264275  2025-05-21 07:26:06.265 +0000 UTC 000000010000000000000002.lz4  ",
    ]


def test_tabwrite_blocks_end_where_a_cell_is_missing() -> None:
    """A column is aligned only over consecutive lines that have it (Go's column blocks)."""
    assert tabwrite([["a", "bb", "x"], ["ccc", "y"], ["d", "e", "z"]]) == (
        "a   bb x\nccc y\nd   e z\n"
    )


# -- ls, stat ----------------------------------------------------------------------------


def fill(storage: Storage) -> None:
    storage.put_object("top.txt", b"top")
    storage.put_object(WAL, lz4.frame.compress(PLAIN))
    storage.put_object("basebackups_005/base_1_backup_stop_sentinel.json", b"{}")
    storage.put_object("basebackups_005/base_1/metadata.json", b"{}")


def rows(out: str) -> list[tuple[str, str, str]]:
    """(type, size, name) of each line of ``st ls`` output after the header."""
    lines = out.splitlines()
    assert lines[0].split() == ["type", "size", "last", "modified", "name"]
    return [(line.split()[0], line.split()[1], line.split()[-1]) for line in lines[1:]]


def test_ls_shows_folders_then_objects(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -r: sub-folders as ``dir`` lines (name ending with /), then objects."""
    fill(archive.storage)
    assert st(archive, "ls") == 0
    out = capsys.readouterr().out
    assert rows(out) == [
        ("dir", "0", "basebackups_005/"),
        ("dir", "0", "wal_005/"),
        ("obj", "3", "top.txt"),
    ]
    assert "0001-01-01 00:00:00 +0000 UTC" in out.splitlines()[1]
    assert st(archive, "ls", "basebackups_005/") == 0
    assert rows(capsys.readouterr().out) == [
        ("dir", "0", "base_1/"),
        ("obj", "2", "base_1_backup_stop_sentinel.json"),
    ]


def test_ls_recursive_lists_objects_breadth_first(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """-r: objects only, relative to the folder listed, a folder's own objects before its
    sub-folders' (WAL-G walks folders breadth first)."""
    fill(archive.storage)
    assert st(archive, "ls", "-r") == 0
    assert [r[2] for r in rows(capsys.readouterr().out)] == [
        "top.txt",
        "basebackups_005/base_1_backup_stop_sentinel.json",
        WAL,
        "basebackups_005/base_1/metadata.json",
    ]
    assert st(archive, "ls", "basebackups_005", "--recursive") == 0
    assert [r[2] for r in rows(capsys.readouterr().out)] == [
        "base_1_backup_stop_sentinel.json",
        "base_1/metadata.json",
    ]


def test_stat_prints_one_line_or_fails(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """stat prints the object as ls does; a missing one is a one-line error, exit 1."""
    fill(archive.storage)
    assert st(archive, "stat", "top.txt") == 0
    assert rows(capsys.readouterr().out) == [("obj", "3", "top.txt")]
    assert st(archive, "stat", "nope") == 1
    assert "ERROR: object 'nope' does not exist" in untimed(capsys.readouterr().err)


# -- cat, get, put -------------------------------------------------------------------------


def test_cat_is_raw_unless_asked(
    archive: Archive, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """cat writes the stored bytes; --decompress decompresses by the extension."""
    fill(archive.storage)
    assert st(archive, "cat", WAL) == 0
    assert capsysbinary.readouterr().out == lz4.frame.compress(PLAIN)
    assert st(archive, "cat", WAL, "--decompress") == 0
    assert capsysbinary.readouterr().out == PLAIN


def test_get_decompresses_by_default(archive: Archive, tmp_path: Path) -> None:
    """get decompresses unless --no-decompress; a folder destination takes the object's
    name; an existing file is never overwritten."""
    fill(archive.storage)
    assert st(archive, "get", WAL, str(tmp_path / "plain")) == 0
    assert (tmp_path / "plain").read_bytes() == PLAIN
    (tmp_path / "raw").mkdir()
    assert st(archive, "get", WAL, str(tmp_path / "raw"), "--no-decompress") == 0
    assert (tmp_path / "raw" / os.path.basename(WAL)).read_bytes() == lz4.frame.compress(PLAIN)
    assert st(archive, "get", WAL, str(tmp_path / "plain")) == 1
    assert (tmp_path / "plain").read_bytes() == PLAIN
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_object_is_one_line_error(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cat and get of a missing object: exit 1, ERROR naming it, no file left."""
    assert st(archive, "cat", "wal_005/nope.lz4") == 1
    err = untimed(capsys.readouterr().err)
    assert err.startswith("ERROR: object 'wal_005/nope.lz4' does not exist")
    assert "Traceback" not in err
    assert st(archive, "get", "wal_005/nope.lz4", str(tmp_path / "x")) == 1
    assert not (tmp_path / "x").exists()


def test_put_get_round_trip_encrypted(
    archive: Archive, tmp_path: Path, pgp_key: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """put compresses (WALG_COMPRESSION_METHOD) and encrypts by default; get undoes both;
    cat --decrypt --decompress too; --no-decrypt gives the OpenPGP message; a second put
    needs -f; --no-compress/--no-encrypt store the bytes as they are."""
    local = tmp_path / "segment"
    local.write_bytes(PLAIN)
    key = {"WALG_PGP_KEY": pgp_key, "WALG_COMPRESSION_METHOD": "brotli"}
    assert st(archive, "put", str(local), "wal_005/seg", **key) == 0
    stored = archive.storage.read_bytes("wal_005/seg.br")
    assert looks_encrypted(stored[:64])
    assert st(archive, "get", "wal_005/seg.br", str(tmp_path / "back"), **key) == 0
    assert (tmp_path / "back").read_bytes() == PLAIN
    assert st(archive, "cat", "wal_005/seg.br", "--decrypt", "--decompress", **key) == 0
    assert capsysbinary.readouterr().out == PLAIN
    assert (
        st(
            archive,
            "get",
            "wal_005/seg.br",
            str(tmp_path / "enc"),
            "--no-decrypt",
            "--no-decompress",
            **key,
        )
        == 0
    )
    assert (tmp_path / "enc").read_bytes() == stored
    assert st(archive, "put", str(local), "wal_005/seg", **key) == 1
    assert b"already exists" in capsysbinary.readouterr().err
    assert st(archive, "put", str(local), "wal_005/seg", "-f", **key) == 0
    assert st(archive, "put", str(local), "raw/seg", "--no-compress", "--no-encrypt", **key) == 0
    assert archive.storage.read_bytes("raw/seg") == PLAIN
    # an unencrypted object with a key configured: get passes it through
    assert st(archive, "get", "raw/seg", str(tmp_path / "raw"), "--no-decompress", **key) == 0
    assert (tmp_path / "raw").read_bytes() == PLAIN


# -- rm, check, --target -----------------------------------------------------------------


def test_rm_object_folder_and_missing(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    """rm deletes an object, or everything under a folder; nothing there is an error."""
    fill(archive.storage)
    assert st(archive, "rm", "top.txt") == 0
    assert not archive.storage.exists("top.txt")
    assert st(archive, "rm", "basebackups_005") == 0
    assert [o.name for o in archive.storage.list_objects()] == [WAL]
    assert st(archive, "rm", "basebackups_005/") == 1
    err = untimed(capsys.readouterr().err)
    assert "ERROR: object or folder 'basebackups_005/' does not exist" in err


def test_check_read_and_write(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    """check read lists and finds the files named; check write leaves nothing behind."""
    fill(archive.storage)
    assert st(archive, "check", "read", "top.txt", WAL) == 0
    assert st(archive, "check", "read", "top.txt", "gone", "gone2") == 1
    assert "ERROR: files are missing: gone, gone2" in untimed(capsys.readouterr().err)
    before = [o.name for o in archive.storage.list_objects()]
    assert st(archive, "check", "write") == 0
    assert [o.name for o in archive.storage.list_objects()] == before


def test_target_other_than_default_is_refused(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """--target=default is the one storage; any other name is a usage error (exit 2)."""
    fill(archive.storage)
    assert st(archive, "--target=default", "ls") == 0
    assert st(archive, "ls", "-t", "default") == 0
    capsys.readouterr()
    assert st(archive, "-t", "failover1", "ls") == 2
    assert "WALG_FAILOVER_STORAGES is not supported" in untimed(capsys.readouterr().err)


def test_glob(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    """--glob matches one pattern segment per folder level (cat, rm)."""
    fill(archive.storage)
    archive.storage.put_object("basebackups_005/base_2_backup_stop_sentinel.json", b"[]")
    capsys.readouterr()
    assert st(archive, "cat", "-g", "basebackups_005/*_sentinel.json") == 0
    assert capsys.readouterr().out == "{}[]"
    assert st(archive, "rm", "--glob", "base*/base_?") == 0
    assert not archive.storage.exists("basebackups_005/base_1/metadata.json")
    assert archive.storage.exists("basebackups_005/base_2_backup_stop_sentinel.json")
