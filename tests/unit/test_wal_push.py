"""wal-push on file storage, in a fake pg_wal: keys, content, encryption, overwrite
prevention, background uploads of ready segments and walg's markers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from servers.gpg import throwaway_key
from servers.logtext import untimed
from structlog.testing import capture_logs

from walg import config
from walg.cli import main
from walg.compression import method_for_extension, open_decompressed
from walg.config import Settings
from walg.config.settings import CryptoSettings, Secret
from walg.crypto import Crypter, looks_encrypted
from walg.errors import StorageError, WalFileInvalid, WalgError
from walg.format import layout
from walg.postgres.wal import parse_segment_name
from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader
from walg.storage.file import TEMP_MARK, FileStorage
from walg.wal import names
from walg.wal.markers import TEMP_MAX_AGE, ArchiveStatus, marker_text
from walg.wal.push import Outcome, push_wal

SEG = [f"00000001000000000000000{i}" for i in range(1, 8)]  # ...01 .. ...07
SIZE = 2 << 20  # a segment size PostgreSQL allows, more than one read chunk


def wal_bytes(seed: int, size: int = SIZE) -> bytes:
    """Segment-like content: random records between runs of zeros (compressible, unique)."""
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        part = rng.randbytes(rng.randrange(100, 3000)) + bytes(rng.randrange(0, 3000))
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def with_header(name: str, body: bytes) -> bytes:
    """``body`` with a first page header that makes it segment ``name`` (a
    ``len(body)``-byte segment, as PostgreSQL 15 writes it)."""
    size = len(body)
    timeline, segno = parse_segment_name(name[:24], size)
    header = LongPageHeader(0xD110, 0x0002, timeline, segno * size, 0, 7, size, 8192)
    return header.pack() + body[LONG_HEADER_SIZE:]


def segment_bytes(name: str, seed: int, size: int = SIZE) -> bytes:
    """A valid WAL segment (or partial segment) ``name`` with content from ``seed``."""
    return with_header(name, wal_bytes(seed, size))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def pg_wal(tmp_path: Path) -> Path:
    """An empty pg_wal with its archive_status folder."""
    path = tmp_path / "pgdata" / "pg_wal"
    (path / "archive_status").mkdir(parents=True)
    return path


def settings_for(store: Path, **env: str) -> Settings:
    return config.load({"WALG_FILE_PREFIX": str(store), "WALG_UPLOAD_CONCURRENCY": "1", **env})


def add_wal(pg_wal: Path, name: str, data: bytes | None = None, ready: bool = True) -> Path:
    """Write WAL file ``name`` (content from its name unless given), marked ready."""
    path = pg_wal / name
    path.write_bytes(segment_bytes(name, hash(name) & 0xFFFF) if data is None else data)
    if ready:
        (pg_wal / "archive_status" / f"{name}.ready").touch()
    return path


def stored(store: Path, key: str, crypter: Crypter | None = None) -> bytes:
    """The plain content of object ``key``: decrypted if needed, then decompressed."""
    method = method_for_extension(key.rsplit(".", 1)[-1]) or "none"
    with open(store / key, "rb") as raw:
        source: BinaryIO = raw
        if crypter is not None:
            source = crypter.open_decrypted(raw)
        with open_decompressed(source, method, key) as plain:
            return plain.read()


def markers(pg_wal: Path) -> list[str]:
    folder = pg_wal / "walg_data" / "walg_archive_status"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def objects(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "key"),
    [
        ("lz4", "wal_005/000000010000000000000001.lz4"),
        ("lzma", "wal_005/000000010000000000000001.lzma"),
        ("brotli", "wal_005/000000010000000000000001.br"),
        ("none", "wal_005/000000010000000000000001"),
    ],
)
def test_wal_key_per_method(method: str, key: str) -> None:
    """The object key is wal_005/<name> plus the method's extension, as WAL-G names it."""
    assert names.wal_key(SEG[0], method) == key


def test_candidate_keys_start_with_the_preferred_method() -> None:
    """Keys to look for come with their method, the configured one first, then those
    only WAL-G reads."""
    keys = layout.wal_keys("00000002.history", "brotli")
    assert [(k.key, k.method, k.readable) for k in keys] == [
        ("wal_005/00000002.history.br", "brotli", True),
        ("wal_005/00000002.history.lz4", "lz4", True),
        ("wal_005/00000002.history.lzma", "lzma", True),
        ("wal_005/00000002.history", "none", True),
        ("wal_005/00000002.history.zst", "zstd", False),
        ("wal_005/00000002.history.gz", "gzip", False),
        ("wal_005/00000002.history.lzo", "lzo", False),
    ]


def test_copy_only_wal_g_can_read_is_not_archived_beside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A history file already archived by WAL-G with zstd cannot be compared: wal-push
    refuses (exit 1) rather than store a second, perhaps different, copy beside it."""
    storage = tmp_path / "storage"
    (storage / "wal_005").mkdir(parents=True)
    (storage / "wal_005" / "00000002.history.zst").write_bytes(b"zstd bytes")
    history = tmp_path / "00000002.history"
    history.write_text("1\t0/3000000\tno recovery target specified\n")
    assert main(["wal-push", str(history)], environ={"WALG_FILE_PREFIX": str(storage)}) == 1
    assert "00000002.history.zst is already archived, compressed with zstd" in (
        untimed(capsys.readouterr().err)
    )
    assert sorted(p.name for p in (storage / "wal_005").iterdir()) == ["00000002.history.zst"]


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_wal_key_refuses_paths(bad: str) -> None:
    """Only a plain file name makes a key."""
    with pytest.raises(ValueError):
        names.wal_key(bad, "lz4")


def test_ahead_candidates_selection() -> None:
    """Only later plain segments of the same timeline, not skipped, oldest first, bounded."""
    ready = [
        SEG[5], SEG[0], SEG[3], SEG[2], "000000020000000000000005",
        "00000002.history", f"{SEG[4]}.partial", f"{SEG[4]}.00000028.backup", SEG[1],
    ]  # fmt: skip
    assert names.ahead_candidates(SEG[1], ready, {SEG[3]}, 10) == [SEG[2], SEG[5]]
    assert names.ahead_candidates(SEG[1], ready, set(), 2) == [SEG[2], SEG[3]]
    assert names.ahead_candidates(SEG[1], ready, set(), 0) == []
    assert names.ahead_candidates("00000001.history", ready, set(), 5) == []


# --- storing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "ext"), [("lz4", "lz4"), ("lzma", "lzma"), ("brotli", "br"), ("none", "")]
)
def test_push_stores_compressed_segment(store: Path, pg_wal: Path, method: str, ext: str) -> None:
    """A segment is stored as wal_005/<name>.<ext> (WAL-G's none: wal_005/<name>, the bytes
    as they are) and decompresses to the local bytes."""
    path = add_wal(pg_wal, SEG[0])
    result = push_wal(settings_for(store, WALG_COMPRESSION_METHOD=method), str(path))
    key = f"wal_005/{SEG[0]}" + (f".{ext}" if ext else "")
    assert (result.outcome, result.key) == (Outcome.STORED, key)
    assert objects(store) == [key]
    assert stored(store, key) == path.read_bytes()


BACKUP_HISTORY = (
    f"START WAL LOCATION: 0/3000028 (file {SEG[2]})\nSTOP WAL LOCATION: 0/3000100 (file "
    f"{SEG[2]})\nCHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: streamed\n"
).encode()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("00000002.history", b"1\t0/3000000\tno recovery target specified\n"),
        (f"{SEG[2]}.00000028.backup", BACKUP_HISTORY),
        (f"{SEG[3]}.partial", segment_bytes(SEG[3], 3)),
    ],
)
def test_push_stores_history_backup_and_partial_files(
    store: Path, pg_wal: Path, name: str, data: bytes
) -> None:
    """Timeline history, backup history and partial files are stored under their own name."""
    path = add_wal(pg_wal, name, data)
    result = push_wal(settings_for(store), str(path))
    assert result.key == f"wal_005/{name}.lz4"
    assert stored(store, f"wal_005/{name}.lz4") == path.read_bytes()


def test_push_relative_path_from_pgdata(
    store: Path, pg_wal: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """%p is relative to the data directory, where PostgreSQL runs archive_command."""
    add_wal(pg_wal, SEG[0])
    monkeypatch.chdir(pg_wal.parent)
    assert push_wal(settings_for(store), f"pg_wal/{SEG[0]}").outcome is Outcome.STORED
    assert objects(store) == [f"wal_005/{SEG[0]}.lz4"]


def test_push_of_other_name_warns_and_stores(store: Path, tmp_path: Path) -> None:
    """A file that is not named like a WAL file is still pushed (as WAL-G does), with a warning."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    with capture_logs() as logs:
        result = push_wal(settings_for(store), str(path))
    assert result.key == "wal_005/notes.txt.lz4"
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "not a WAL file name" in logs[0]["event"]


def test_missing_file_is_one_line_error(
    store: Path, pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file fails with exit 1, one ERROR line and a HINT, and stores nothing."""
    path = pg_wal / SEG[0]
    with pytest.raises(WalgError, match="does not exist"):
        push_wal(settings_for(store), str(path))
    code = main(["wal-push", str(path)], environ={"WALG_FILE_PREFIX": str(store)})
    err = untimed(capsys.readouterr().err).splitlines()
    assert code == 1
    assert err[0] == f"ERROR: WAL file {path} does not exist"
    assert err[1].startswith("HINT: ") and len(err) == 2
    assert objects(store) == []


def _bad_files() -> dict[str, tuple[str, bytes, str]]:
    """Files that must never be archived: test id -> (name, content, what the error says)."""
    good = segment_bytes(SEG[1], 1)
    # 1 MiB segments, but the address of segment 2 of 2 MiB segments
    short = LongPageHeader(0xD110, 2, 1, 4 << 20, 0, 7, 1 << 20, 8192)
    return {
        "empty": (SEG[1], b"", "it is empty"),
        "1 MiB of a 2 MiB segment": (SEG[1], good[: 1 << 20], "segments are 2097152"),
        "1 MiB, header of 16 MiB": (SEG[1], with_header(SEG[1], bytes(16 << 20))[: 1 << 20],
                                    "segments are 16777216"),
        "garbage": (SEG[1], random.Random(5).randbytes(SIZE), "magic"),
        "wrong address": (SEG[1], segment_bytes(SEG[2], 1), "first page is at 0/600000"),
        "wrong timeline": (SEG[1], with_header("00000002" + SEG[1][8:], good),
                           "on timeline 2, not on timeline 1"),
        "other segment size": (SEG[1], short.pack() + bytes((1 << 20) - 40),
                               "at 0/400000, but segment .* starts at 0/200000"),
        "partial cut short": (f"{SEG[1]}.partial", good[:-8192], "segments are 2097152"),
        "history of timeline 1": ("00000001.history", b"1\t0/3000000\tx\n", "no history file"),
        "history not text": ("00000003.history", b"\x00" * 40, "malformed"),
        "history out of order": ("00000003.history", b"2\t0/5000000\tb\n1\t0/3000000\ta\n",
                                 "must increase"),
        "empty history": ("00000002.history", b"", "names no parent"),
        "backup history not text": (f"{SEG[2]}.00000028.backup", b"garbage", "START WAL"),
        "backup history of another segment": (f"{SEG[1]}.00000028.backup", BACKUP_HISTORY,
                                              "its name does not name"),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_bad_files()))
def test_invalid_wal_file_is_refused(
    case: str, store: Path, pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose size or first page header (or text) does not fit its name exits 1
    with one ERROR line naming the file and the problem, and nothing is stored."""
    name, data, problem = _bad_files()[case]
    path = add_wal(pg_wal, name, data)
    with pytest.raises(WalFileInvalid, match=problem):
        push_wal(settings_for(store), str(path))
    code = main(["wal-push", str(path)], environ={"WALG_FILE_PREFIX": str(store)})
    err = untimed(capsys.readouterr().err).splitlines()
    assert code == 1
    assert err[0].startswith(f"ERROR: {path} is not a valid WAL file {name}: ")
    assert err[1].startswith("HINT: ") and len(err) == 2
    assert objects(store) == []


def test_content_check_off_stores_and_restores_files_as_they_are(
    store: Path, pg_wal: Path, tmp_path: Path
) -> None:
    """WALG_WAL_CHECK_CONTENT=false (WAL-G's way, for synthetic files): a file that is not
    WAL (WAL-G's prefetch script's 0xFFFF magic, then zeros) is archived and fetched back
    byte for byte; with the default the same file is refused."""
    from walg.wal.fetch import fetch_wal

    fake = b"\xff\xff\xff\xff" + bytes((1 << 20) - 4)
    path = add_wal(pg_wal, SEG[1], fake, ready=False)
    with pytest.raises(WalFileInvalid):
        push_wal(settings_for(store), str(path))
    settings = settings_for(store, WALG_WAL_CHECK_CONTENT="false")
    push_wal(settings, str(path))
    dest = tmp_path / "restored"
    fetch_wal(FileStorage(str(store)), settings, SEG[1], str(dest))
    assert dest.read_bytes() == fake
    with pytest.raises(WalFileInvalid):
        fetch_wal(FileStorage(str(store)), settings_for(store), SEG[1], str(tmp_path / "x"))


def test_invalid_ready_file_is_never_uploaded_ahead(store: Path, pg_wal: Path) -> None:
    """A ready segment that fails the check is skipped by the background uploads (a
    warning; not stored, not marked) while valid ones are stored."""
    paths = ready_segments(pg_wal, 2)
    add_wal(pg_wal, SEG[2], segment_bytes(SEG[2], 1)[: 1 << 20])  # cut short
    add_wal(pg_wal, SEG[3])
    settings = settings_for(store, WALG_UPLOAD_CONCURRENCY="8")
    with capture_logs() as logs:
        result = push_wal(settings, str(paths[0]))
    assert (result.ahead, result.ahead_failed) == ((SEG[1], SEG[3]), (SEG[2],))
    assert objects(store) == [f"wal_005/{SEG[i]}.lz4" for i in (0, 1, 3)]
    assert markers(pg_wal) == [f"{SEG[1]}.done", f"{SEG[3]}.done"]
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [e["segment"] for e in warned] == [SEG[2]] and "valid" in warned[0]["error"]


def test_new_timeline_segment_with_old_timeline_header_is_stored(
    store: Path, pg_wal: Path
) -> None:
    """The first segment of a new timeline, copied at promotion from the old timeline's
    segment (first page still on the old timeline), is archived."""
    name = "00000003" + SEG[1][8:]
    path = add_wal(pg_wal, name, segment_bytes(SEG[1], 4))  # first page on timeline 1
    assert push_wal(settings_for(store), str(path)).outcome is Outcome.STORED


def test_storage_error_is_clear_and_non_zero(
    tmp_path: Path, pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the storage cannot be written, wal-push names the file and exits non-zero."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = add_wal(pg_wal, SEG[0])
    code = main(["wal-push", str(path)], environ={"WALG_FILE_PREFIX": str(blocker)})
    err = untimed(capsys.readouterr().err).splitlines()
    assert code == 1
    assert err[0].startswith(f"ERROR: cannot archive {SEG[0]}: ")
    assert err[1].startswith("HINT: ")
    assert markers(pg_wal) == []


def test_cli_push_succeeds_silently(
    store: Path, pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wal-g wal-push PATH` exits 0 and prints nothing at the default log level."""
    path = add_wal(pg_wal, SEG[0])
    assert main(["wal-push", str(path)], environ={"WALG_FILE_PREFIX": str(store)}) == 0
    assert capsys.readouterr() == ("", "")
    assert objects(store) == [f"wal_005/{SEG[0]}.lz4"]


# --- encryption -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgp_key() -> Iterator[str]:
    """A throwaway armored private key (ed25519/cv25519, no passphrase)."""
    with throwaway_key("walg wal-push test") as key:
        yield key


def test_push_encrypts_with_configured_key(store: Path, pg_wal: Path, pgp_key: str) -> None:
    """With WALG_PGP_KEY the object is OpenPGP-encrypted, under the same key name."""
    path = add_wal(pg_wal, SEG[0])
    push_wal(settings_for(store, WALG_PGP_KEY=pgp_key), str(path))
    key = f"wal_005/{SEG[0]}.lz4"
    assert looks_encrypted((store / key).read_bytes()[:64])
    with Crypter(CryptoSettings(pgp_key=Secret(pgp_key))) as crypter:
        assert stored(store, key, crypter) == path.read_bytes()


def test_overwrite_check_decrypts(store: Path, pg_wal: Path, pgp_key: str) -> None:
    """An encrypted archived copy is decrypted for the comparison: identical succeeds."""
    path = add_wal(pg_wal, SEG[0])
    settings = settings_for(store, WALG_PGP_KEY=pgp_key, WALG_PREVENT_WAL_OVERWRITE="true")
    push_wal(settings, str(path))
    assert push_wal(settings, str(path)).outcome is Outcome.IDENTICAL
    path.write_bytes(segment_bytes(SEG[0], 99))
    with pytest.raises(WalgError, match="other content"):
        push_wal(settings, str(path))


# --- overwrite prevention ---------------------------------------------------------------------


def test_identical_copy_is_not_uploaded_again(store: Path, pg_wal: Path) -> None:
    """With WALG_PREVENT_WAL_OVERWRITE an identical archived copy succeeds without a write."""
    path = add_wal(pg_wal, SEG[0])
    settings = settings_for(store, WALG_PREVENT_WAL_OVERWRITE="true")
    push_wal(settings, str(path))
    obj = store / f"wal_005/{SEG[0]}.lz4"
    before = obj.stat().st_mtime_ns, obj.stat().st_ino
    assert push_wal(settings, str(path)).outcome is Outcome.IDENTICAL
    assert (obj.stat().st_mtime_ns, obj.stat().st_ino) == before


def test_different_copy_fails_and_is_kept(
    store: Path, pg_wal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A different archived copy makes the push fail (exit 1, ERROR and HINT) and stays."""
    path = add_wal(pg_wal, SEG[0])
    env = {"WALG_FILE_PREFIX": str(store), "WALG_PREVENT_WAL_OVERWRITE": "true"}
    assert main(["wal-push", str(path)], environ=env) == 0
    original = (store / f"wal_005/{SEG[0]}.lz4").read_bytes()
    path.write_bytes(segment_bytes(SEG[0], 7))
    assert main(["wal-push", str(path)], environ=env) == 1
    err = untimed(capsys.readouterr().err).splitlines()
    assert err[0].startswith(f"ERROR: wal_005/{SEG[0]}.lz4 is already archived with other")
    assert err[1].startswith("HINT: ") and len(err) == 2
    assert (store / f"wal_005/{SEG[0]}.lz4").read_bytes() == original


def test_copy_with_other_extension_is_compared(store: Path, pg_wal: Path) -> None:
    """A copy stored with another compression counts: identical succeeds, different fails."""
    path = add_wal(pg_wal, SEG[0])
    push_wal(settings_for(store, WALG_COMPRESSION_METHOD="lzma"), str(path))
    settings = settings_for(store, WALG_PREVENT_WAL_OVERWRITE="true")
    result = push_wal(settings, str(path))
    assert (result.outcome, result.key) == (Outcome.IDENTICAL, f"wal_005/{SEG[0]}.lzma")
    changed = bytearray(path.read_bytes())
    changed[-1] ^= 1  # the archived content but for its last byte
    path.write_bytes(changed)
    with pytest.raises(WalgError, match="other content"):
        push_wal(settings, str(path))
    assert objects(store) == [f"wal_005/{SEG[0]}.lzma"]


def test_segment_is_overwritten_without_the_setting(store: Path, pg_wal: Path) -> None:
    """Without WALG_PREVENT_WAL_OVERWRITE a segment is simply stored again (WAL-G's default)."""
    path = add_wal(pg_wal, SEG[0])
    push_wal(settings_for(store), str(path))
    path.write_bytes(segment_bytes(SEG[0], 5))
    assert push_wal(settings_for(store), str(path)).outcome is Outcome.STORED
    assert stored(store, f"wal_005/{SEG[0]}.lz4") == segment_bytes(SEG[0], 5)


def test_history_file_is_always_checked(store: Path, pg_wal: Path) -> None:
    """A .history file is compared even without the setting: identical ok, different fails."""
    path = add_wal(pg_wal, "00000002.history", b"1\t0/3000000\tno recovery target\n")
    push_wal(settings_for(store), str(path))
    assert push_wal(settings_for(store), str(path)).outcome is Outcome.IDENTICAL
    path.write_bytes(b"1\t0/5000000\tno recovery target\n")
    with pytest.raises(WalgError, match="other content"):
        push_wal(settings_for(store), str(path))


def test_corrupt_archived_copy_fails_the_comparison(store: Path, pg_wal: Path) -> None:
    """An archived copy that cannot be decompressed fails the push with a clear message."""
    path = add_wal(pg_wal, SEG[0])
    settings = settings_for(store, WALG_PREVENT_WAL_OVERWRITE="true")
    push_wal(settings, str(path))
    obj = store / f"wal_005/{SEG[0]}.lz4"
    obj.write_bytes(obj.read_bytes()[:-100])
    with pytest.raises(WalgError, match="cannot be read to compare"):
        push_wal(settings, str(path))


# --- background uploads and markers -----------------------------------------------------------


def ready_segments(pg_wal: Path, count: int) -> list[Path]:
    return [add_wal(pg_wal, name) for name in SEG[:count]]


def test_background_uploads_ready_siblings(store: Path, pg_wal: Path) -> None:
    """Later ready segments are uploaded too (concurrency - 1 of them) and marked done."""
    paths = ready_segments(pg_wal, 5)
    add_wal(pg_wal, "000000020000000000000009")  # another timeline: never ahead
    settings = settings_for(store, WALG_UPLOAD_CONCURRENCY="3")
    result = push_wal(settings, str(paths[1]))
    assert result.ahead == (SEG[2], SEG[3]) and result.ahead_failed == ()
    assert objects(store) == [f"wal_005/{SEG[i]}.lz4" for i in (1, 2, 3)]
    assert markers(pg_wal) == [f"{SEG[2]}.done", f"{SEG[3]}.done"]
    marker = pg_wal / "walg_data" / "walg_archive_status" / f"{SEG[2]}.done"
    assert marker.read_text() == marker_text(str(store), f"wal_005/{SEG[2]}.lz4")
    for i in (2, 3):
        assert stored(store, f"wal_005/{SEG[i]}.lz4") == paths[i].read_bytes()
    assert sorted(os.listdir(pg_wal / "archive_status")) == sorted(
        f"{n}.ready" for n in [*SEG[:5], "000000020000000000000009"]
    )  # PostgreSQL's status files are never touched


class RecordingStorage(FileStorage):
    """FileStorage that records whether a marker existed while each object was stored."""

    def __init__(self, directory: str, pg_wal: Path) -> None:
        super().__init__(directory)
        self.status = ArchiveStatus(str(pg_wal))
        self.seen: list[tuple[str, bool, bool]] = []

    def _put(self, key: str, source: BinaryIO) -> None:
        name = key.split("/")[-1].split(".")[0]
        before = self.status.is_marked(name, self.directory)
        time.sleep(0.05)
        super()._put(key, source)
        self.seen.append((name, before, self.status.is_marked(name, self.directory)))


def test_markers_are_written_only_after_storing(store: Path, pg_wal: Path) -> None:
    """No marker exists while a segment is being stored; it appears after the put returned."""
    paths = ready_segments(pg_wal, 4)
    storage = RecordingStorage(str(store), pg_wal)
    push_wal(settings_for(store, WALG_UPLOAD_CONCURRENCY="4"), str(paths[0]), storage=storage)
    assert sorted(storage.seen) == [(SEG[i], False, False) for i in range(4)]
    assert markers(pg_wal) == [f"{SEG[i]}.done" for i in (1, 2, 3)]


class ExplodingStorage(FileStorage):
    """Storage that fails the test if anything is read, written or listed."""

    def _put(self, key: str, source: BinaryIO) -> None:
        raise AssertionError(f"put {key}")

    def _stat(self, key: str) -> object:  # type: ignore[override]
        raise AssertionError(f"stat {key}")


def test_marked_segment_returns_at_once(store: Path, pg_wal: Path) -> None:
    """A segment uploaded ahead is not read or stored again; its marker is removed."""
    paths = ready_segments(pg_wal, 3)
    settings = settings_for(store, WALG_UPLOAD_CONCURRENCY="3", WALG_PREVENT_WAL_OVERWRITE="1")
    push_wal(settings, str(paths[0]))
    obj = store / f"wal_005/{SEG[1]}.lz4"
    before = obj.stat().st_mtime_ns
    result = push_wal(settings, str(paths[1]), storage=ExplodingStorage(str(store)))
    assert result.outcome is Outcome.UPLOADED_AHEAD and result.key is None
    assert obj.stat().st_mtime_ns == before
    assert markers(pg_wal) == [f"{SEG[2]}.done"]


FAST_PROBE = """
import json, sys
from walg.cli import main
code = main(["wal-push", sys.argv[1]])
print(json.dumps([code, sorted(sys.modules)]))
"""


def test_marked_segment_loads_no_storage_or_codec(
    store: Path, pg_wal: Path, clean_env: dict[str, str]
) -> None:
    """The call for a segment uploaded ahead imports no storage, codec or crypto module."""
    paths = ready_segments(pg_wal, 2)
    push_wal(settings_for(store, WALG_UPLOAD_CONCURRENCY="2"), str(paths[0]))
    env = {**clean_env, "WALG_FILE_PREFIX": str(store)}
    done = subprocess.run(
        [sys.executable, "-c", FAST_PROBE, str(paths[1])],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    code, modules = json.loads(done.stdout.splitlines()[-1])
    assert code == 0 and markers(pg_wal) == []
    heavy = ("walg.storage", "walg.compression", "walg.crypto", "lz4", "structlog")
    assert [m for m in modules if m.startswith(heavy)] == []


def test_marker_for_another_storage_is_ignored(store: Path, tmp_path: Path, pg_wal: Path) -> None:
    """A marker naming another storage does not count: the segment is pushed, marker removed."""
    paths = ready_segments(pg_wal, 2)
    other = tmp_path / "other"
    push_wal(settings_for(other, WALG_UPLOAD_CONCURRENCY="2"), str(paths[0]))
    assert markers(pg_wal) == [f"{SEG[1]}.done"]
    result = push_wal(settings_for(store), str(paths[1]))
    assert result.outcome is Outcome.STORED
    assert objects(store) == [f"wal_005/{SEG[1]}.lz4"]
    assert markers(pg_wal) == []


def test_marker_for_another_endpoint_is_not_trusted(tmp_path: Path, pg_wal: Path) -> None:
    """A segment uploaded ahead to a bucket at one S3 endpoint is pushed again once the same
    bucket and path are configured at another endpoint (the archive moved to another
    service): the old endpoint's marker does not vouch for it."""
    old_service, new_service = tmp_path / "old", tmp_path / "new"
    paths = ready_segments(pg_wal, 2)
    s3 = {"WALG_S3_PREFIX": "s3://bucket/walg", "WALG_UPLOAD_CONCURRENCY": "2"}
    before = config.load({**s3, "AWS_ENDPOINT": "http://127.0.0.1:9000"})
    push_wal(before, str(paths[0]), storage=FileStorage(str(old_service)))
    assert markers(pg_wal) == [f"{SEG[1]}.done"]
    after = config.load({**s3, "AWS_ENDPOINT": "https://s3.example.net"})
    result = push_wal(after, str(paths[1]), storage=FileStorage(str(new_service)))
    assert result.outcome is Outcome.STORED
    assert objects(new_service) == [f"wal_005/{SEG[1]}.lz4"]
    assert markers(pg_wal) == []


def test_incomplete_marker_is_not_trusted(store: Path, pg_wal: Path) -> None:
    """A marker cut short (no final newline) does not count as uploaded."""
    path = add_wal(pg_wal, SEG[0])
    folder = pg_wal / "walg_data" / "walg_archive_status"
    folder.mkdir(parents=True)
    (folder / f"{SEG[0]}.done").write_text(marker_text(str(store), "wal_005/x.lz4")[:-1])
    assert push_wal(settings_for(store), str(path)).outcome is Outcome.STORED
    assert markers(pg_wal) == []


class FailingStorage(FileStorage):
    """FileStorage that fails to store one key."""

    def __init__(self, directory: str, failing: str) -> None:
        super().__init__(directory)
        self.failing = failing

    def _put(self, key: str, source: BinaryIO) -> None:
        if key == self.failing:
            raise StorageError(f"injected failure for {key}")
        super()._put(key, source)


def test_failed_background_uploads_do_not_fail_the_push(store: Path, pg_wal: Path) -> None:
    """Background failures (an unreadable file, a storage error) are logged, not marked."""
    paths = ready_segments(pg_wal, 2)
    (pg_wal / SEG[2]).mkdir()  # ready, but cannot be read as a file
    (pg_wal / "archive_status" / f"{SEG[2]}.ready").touch()
    add_wal(pg_wal, SEG[3])
    storage = FailingStorage(str(store), f"wal_005/{SEG[3]}.lz4")
    settings = settings_for(store, WALG_UPLOAD_CONCURRENCY="8")
    with capture_logs() as logs:
        result = push_wal(settings, str(paths[0]), storage=storage)
    assert result.outcome is Outcome.STORED
    assert (result.ahead, result.ahead_failed) == ((SEG[1],), (SEG[2], SEG[3]))
    assert markers(pg_wal) == [f"{SEG[1]}.done"]
    assert objects(store) == [f"wal_005/{SEG[i]}.lz4" for i in (0, 1)]
    warned = sorted(e["segment"] for e in logs if e["log_level"] == "warning")
    assert warned == [SEG[2], SEG[3]]


def test_foreground_failure_cancels_background_uploads(store: Path, pg_wal: Path) -> None:
    """When the file itself fails, slow background uploads stop at once, unmarked and
    leaving no partial object."""
    big = [
        add_wal(pg_wal, n, with_header(n, random.Random(i).randbytes(8 << 20)))
        for i, n in enumerate(SEG[:3])
    ]
    settings = settings_for(
        store,
        WALG_UPLOAD_CONCURRENCY="3",
        WALG_PREVENT_WAL_OVERWRITE="true",
        WALG_NETWORK_RATE_LIMIT="1048576",
    )
    (store / "wal_005").mkdir()
    (store / "wal_005" / f"{SEG[0]}").write_bytes(b"an older, different segment")
    with pytest.raises(WalgError, match="other content"):
        push_wal(settings, str(big[0]))
    # Had the call waited for its background uploads (8 s each at this rate), they would
    # have been stored and marked: neither happened, so they were cancelled.
    assert markers(pg_wal) == []
    assert objects(store) == [f"wal_005/{SEG[0]}"]
    assert not any(TEMP_MARK in p.name for p in store.rglob("*"))


def test_stale_markers_and_temporary_files_are_swept(store: Path, pg_wal: Path) -> None:
    """Markers whose .ready file is gone, and old temporary marker files, are removed."""
    paths = ready_segments(pg_wal, 3)
    status = ArchiveStatus(str(pg_wal))
    status.mark(SEG[1], str(store), "k")  # still ready: kept
    status.mark(SEG[5], str(store), "k")  # archived some other way: stale
    temp = Path(status.marker_dir) / f".tmp-{SEG[6]}.1.abcd"
    temp.write_text("")
    old = time.time() - TEMP_MAX_AGE - 10
    os.utime(temp, (old, old))
    push_wal(settings_for(store), str(paths[0]))
    assert markers(pg_wal) == [f"{SEG[1]}.done"]


def test_no_background_uploads_outside_pg_wal(store: Path, tmp_path: Path) -> None:
    """A file in a folder without archive_status is pushed alone and no marker folder appears."""
    path = tmp_path / SEG[0]
    path.write_bytes(segment_bytes(SEG[0], 1))
    (tmp_path / SEG[1]).write_bytes(segment_bytes(SEG[1], 2))
    result = push_wal(settings_for(store, WALG_UPLOAD_CONCURRENCY="4"), str(path))
    assert result.ahead == () and not (tmp_path / "walg_data").exists()
