"""wal-fetch and wal-push's overwrite check read an archived copy through one function
(walg.wal.decode.open_plain): for every method, encrypted or not, they agree."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
from servers.gpg import throwaway_key

from walg import config
from walg.compression import EXTENSIONS, compress_stream
from walg.config.settings import CryptoSettings, Secret
from walg.crypto import Crypter, looks_encrypted
from walg.errors import CryptoError, WalgError
from walg.storage.file import FileStorage
from walg.wal.fetch import fetch_wal
from walg.wal.push import Outcome, push_wal

NAME = "00000003.history"  # history files are always compared with an archived copy
# longer than the 64 bytes wal-fetch keeps of what it writes: the check reads the file back
TEXT = b"1\t0/3000000\tno recovery target specified\n2\t0/5000000\tno recovery target specified\n"
# A plain brotli stream (as another writer's settings may make it) that begins like an
# OpenPGP message: brotli has no magic, so only decoding it tells them apart.
LOOKALIKE_TEXT = b"1\t0/3000000\tbefore " + b"x" * 56 + b" (test)\n2\t0/5000000\tx\n"
LOOKALIKE = brotli.compress(LOOKALIKE_TEXT, quality=5, lgwin=12)


@pytest.fixture(scope="module")
def pgp_key() -> Iterator[str]:
    """A throwaway armored private key (no passphrase)."""
    with throwaway_key("wal decode test") as key:
        yield key


def archive(store: Path, method: str, stored: bytes) -> None:
    """Put ``stored`` (already compressed, maybe encrypted) as the archived copy of NAME."""
    ext = EXTENSIONS[method]
    FileStorage(str(store)).put_object(
        f"wal_005/{NAME}.{ext}" if ext else f"wal_005/{NAME}", stored
    )


def compressed(data: bytes, method: str) -> bytes:
    return b"".join(compress_stream(io.BytesIO(data), method))


def encrypted(data: bytes, key: str) -> bytes:
    with Crypter(CryptoSettings(pgp_key=Secret(key))) as crypter:
        return b"".join(crypter.encrypt_stream(io.BytesIO(data)))


def both_read(tmp_path: Path, store: Path, local: bytes, **env: str) -> tuple[bytes, Outcome]:
    """What wal-fetch writes, and wal-push's outcome for a local file holding ``local``."""
    settings = config.load({"WALG_FILE_PREFIX": str(store), "WALG_UPLOAD_CONCURRENCY": "1", **env})
    dest = tmp_path / "fetched"
    fetch_wal(FileStorage(str(store)), settings, NAME, str(dest))
    path = tmp_path / "pg_wal" / NAME
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(local)
    return dest.read_bytes(), push_wal(settings, str(path)).outcome


@pytest.mark.parametrize("method", ["lz4", "lzma", "brotli", "none"])
def test_plain_copy_fetches_and_compares_alike(tmp_path: Path, method: str) -> None:
    """An unencrypted copy: fetched as the file, and identical in the overwrite check."""
    store = tmp_path / "store"
    archive(store, method, compressed(TEXT, method))
    assert both_read(tmp_path, store, TEXT) == (TEXT, Outcome.IDENTICAL)
    with pytest.raises(WalgError, match="other content"):
        both_read(tmp_path, store, TEXT.replace(b"no", b"a "))


@pytest.mark.parametrize("method", ["lz4", "lzma", "brotli", "none"])
def test_encrypted_copy_fetches_and_compares_alike(
    tmp_path: Path, method: str, pgp_key: str
) -> None:
    """An OpenPGP copy: decrypted by both with the key; without one, both say so."""
    store = tmp_path / "store"
    archive(store, method, encrypted(compressed(TEXT, method), pgp_key))
    assert both_read(tmp_path, store, TEXT, WALG_PGP_KEY=pgp_key) == (TEXT, Outcome.IDENTICAL)
    settings = config.load({"WALG_FILE_PREFIX": str(store)})
    with pytest.raises(CryptoError, match="no PGP key is configured"):
        fetch_wal(FileStorage(str(store)), settings, NAME, str(tmp_path / "x"))
    path = tmp_path / "pg_wal" / NAME
    with pytest.raises(CryptoError, match="no PGP key is configured"):
        push_wal(settings, str(path))


def test_brotli_copy_that_looks_encrypted_fetches_and_compares_alike(tmp_path: Path) -> None:
    """Without a key, a plain brotli copy whose first bytes look like OpenPGP is decoded by
    both (wal-push used to refuse it as 'encrypted but no PGP key')."""
    assert looks_encrypted(LOOKALIKE[:64])
    store = tmp_path / "store"
    archive(store, "brotli", LOOKALIKE)
    assert both_read(tmp_path, store, LOOKALIKE_TEXT) == (LOOKALIKE_TEXT, Outcome.IDENTICAL)
