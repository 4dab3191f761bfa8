"""libsodium encryption (WALG_LIBSODIUM_KEY*): keys, damaged streams, configuration, and
wal-push / wal-fetch (overwrite check and prefetch included) with it."""

from __future__ import annotations

import base64
import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.gpg import throwaway_key
from servers.logtext import untimed
from structlog.testing import capture_logs

from walg import config
from walg.cli import main
from walg.compression import open_decompressed
from walg.config.compare import differences
from walg.config.settings import CryptoSettings, Secret
from walg.crypto import Crypter, looks_encrypted
from walg.crypto._sodium import HEADER_SIZE, SodiumDecryptor, SodiumEncryptor, derive_key
from walg.errors import EX_ABORT_RECOVERY, ConfigError, CryptoError, WalgError
from walg.stages.codecs import Decrypt, Encrypt
from walg.wal.push import Outcome, push_wal

HEX = "2e4af6d03c7f73f4a80b0594dee2b4bcd11300bafb8a68b2dda610fc88817fb2"
KEY = bytes.fromhex(HEX)
TEXT_KEY = "-+isw)@(s&56x57eh1%y3@r$*qs_&@$--abnm9m@18@9-e%um1"  # WAL-G's testdata/testKey
SEGMENT = "000000010000000000000003"


def seal(plain: bytes, key: bytes = KEY) -> bytes:
    enc = SodiumEncryptor(key)
    return enc.update(plain) + enc.finish()


def unseal(sealed: bytes, key: bytes = KEY, name: str = "obj") -> bytes:
    dec = SodiumDecryptor(key, name)
    return dec.update(sealed) + dec.finish()


def crypto(**env: str) -> CryptoSettings:
    return config.load(env).crypto


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 24])
def test_short_none_key_is_refused(length: int) -> None:
    """transform none needs at least 25 bytes: a clear ConfigError (exit 2), no key shown."""
    settings = crypto(WALG_LIBSODIUM_KEY="k" * length) if length else CryptoSettings(
        libsodium_key=Secret(""))
    with pytest.raises(ConfigError) as info:
        Crypter(settings).open()
    assert "too short" in info.value.msg and f"{length} bytes" in info.value.msg
    assert "at least 25" in info.value.msg and info.value.exit_code == 2
    assert "k" * max(length, 1) * 2 not in info.value.msg + (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "key"),
    [("a" * 25, b"a" * 25 + bytes(7)), ("b" * 32, b"b" * 32), (TEXT_KEY, TEXT_KEY[:32].encode())],
)
def test_none_key_is_padded_or_cut_to_32_bytes(text: str, key: bytes) -> None:
    """As WAL-G: the text's bytes, zero-padded or cut to 32."""
    assert derive_key(text.encode(), "none", "k") == key


def test_base64_and_hex_keys_decode_to_the_same_key() -> None:
    """base64 and hex keys (either case) decode; transform names are read in any case."""
    b64 = base64.b64encode(KEY).decode()
    for env in ({"WALG_LIBSODIUM_KEY": HEX, "WALG_LIBSODIUM_KEY_TRANSFORM": "hex"},
                {"WALG_LIBSODIUM_KEY": HEX.upper(), "WALG_LIBSODIUM_KEY_TRANSFORM": "HEX"},
                {"WALG_LIBSODIUM_KEY": b64, "WALG_LIBSODIUM_KEY_TRANSFORM": "base64"}):
        with Crypter(crypto(**env)) as crypter:
            assert unseal(b"".join([(e := crypter.encryptor()).update(b"x"), e.finish()])) == b"x"


@pytest.mark.parametrize(
    ("transform", "text", "words"),
    [("hex", HEX[:-2], "exactly 32 bytes, got 31"), ("hex", HEX + "00", "got 33"),
     ("hex", "zz" * 32, "not valid hex"), ("base64", base64.b64encode(bytes(16)).decode(),
                                          "got 16"),
     ("base64", "not base64!", "not valid base64")],
)
def test_bad_encoded_key_is_refused(transform: str, text: str, words: str) -> None:
    """A hex/base64 key that does not decode to exactly 32 bytes is a ConfigError."""
    with pytest.raises(ConfigError, match=words) as info:
        Crypter(crypto(WALG_LIBSODIUM_KEY=text, WALG_LIBSODIUM_KEY_TRANSFORM=transform)).open()
    assert text not in info.value.msg


def test_unknown_transform_is_refused() -> None:
    with pytest.raises(ConfigError, match="WALG_LIBSODIUM_KEY_TRANSFORM"):
        crypto(WALG_LIBSODIUM_KEY=HEX, WALG_LIBSODIUM_KEY_TRANSFORM="rot13")


def test_key_path_is_read_and_stripped(tmp_path: Path) -> None:
    """WALG_LIBSODIUM_KEY_PATH: the file's content without surrounding whitespace."""
    path = tmp_path / "key"
    path.write_text(f"  {HEX}\n\n")
    settings = crypto(WALG_LIBSODIUM_KEY_PATH=str(path), WALG_LIBSODIUM_KEY_TRANSFORM="hex")
    with Crypter(settings) as crypter:
        assert unseal(b"".join([(e := crypter.encryptor()).update(b"y"), e.finish()])) == b"y"


def test_inline_key_wins_over_key_path(tmp_path: Path) -> None:
    """As WAL-G: WALG_LIBSODIUM_KEY is used when both it and the key file are set."""
    (tmp_path / "key").write_text("0" * 64)
    settings = crypto(WALG_LIBSODIUM_KEY=HEX, WALG_LIBSODIUM_KEY_PATH=str(tmp_path / "key"),
                      WALG_LIBSODIUM_KEY_TRANSFORM="hex")
    with Crypter(settings) as crypter:
        assert unseal(b"".join([(e := crypter.encryptor()).update(b"z"), e.finish()])) == b"z"


def test_unreadable_key_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the libsodium key file .*missing"):
        Crypter(crypto(WALG_LIBSODIUM_KEY_PATH=str(tmp_path / "missing"))).open()


def test_pgp_wins_over_libsodium(tmp_path: Path) -> None:
    """WAL-G's ConfigureCrypter tries OpenPGP first: with both set, OpenPGP is used."""
    both = crypto(WALG_PGP_KEY_PATH=str(tmp_path / "k.asc"), WALG_LIBSODIUM_KEY=HEX,
                  WALG_LIBSODIUM_KEY_TRANSFORM="hex")
    assert both.pgp and not both.libsodium and both.enabled
    assert not Crypter(both).sealed
    only = crypto(WALG_LIBSODIUM_KEY=HEX, WALG_LIBSODIUM_KEY_TRANSFORM="hex")
    assert only.libsodium and only.enabled and Crypter(only).sealed


def test_settings_are_accepted_and_hide_the_key() -> None:
    """The three settings are no longer refused; the key never shows in repr or logs."""
    settings = config.load({"WALG_FILE_PREFIX": "/tmp/x", "WALG_LIBSODIUM_KEY": TEXT_KEY})
    assert settings.config_warnings() == [] and TEXT_KEY not in repr(settings)
    with capture_logs() as logs, Crypter(settings.crypto) as crypter:
        unseal(b"".join([(e := crypter.encryptor()).update(b"q"), e.finish()]),
               derive_key(TEXT_KEY.encode(), "none", "k"))
    assert TEXT_KEY[:25] not in repr(logs)


def test_crypter_pickles_before_open_only() -> None:
    """Stages carry a Crypter to workers: picklable until opened, then it holds the key."""
    crypter = Crypter(crypto(WALG_LIBSODIUM_KEY=HEX, WALG_LIBSODIUM_KEY_TRANSFORM="hex"))
    again = pickle.loads(pickle.dumps(crypter)).open()
    assert again.is_open and again.sealed
    with pytest.raises(TypeError):
        pickle.dumps(again)
    again.close()
    assert not again.is_open


def test_daemon_compares_libsodium_settings() -> None:
    """A wal-push/wal-fetch request with another libsodium key or transform is refused."""
    base = {"WALG_FILE_PREFIX": "/tmp/x", "WALG_LIBSODIUM_KEY": HEX}
    ours = config.load(base)
    other_key = config.load({**base, "WALG_LIBSODIUM_KEY": HEX[::-1]})
    other_tf = config.load({**base, "WALG_LIBSODIUM_KEY_TRANSFORM": "hex"})
    assert differences(ours, other_key, False) == ["WALG_LIBSODIUM_KEY"]
    assert differences(ours, other_tf, False) == ["WALG_LIBSODIUM_KEY_TRANSFORM"]
    assert differences(ours, config.load(base), True) == []


# --- damaged streams ------------------------------------------------------------------------


def test_wrong_key_is_one_clear_error() -> None:
    sealed = seal(os.urandom(20000))
    with pytest.raises(CryptoError) as info:
        unseal(sealed, bytes(32), name="wal_005/X.lz4")
    assert info.value.msg.startswith("cannot decrypt wal_005/X.lz4: wrong libsodium key?")
    assert "\n" not in info.value.msg


@pytest.mark.parametrize("size", [0, 100, 8192, 3 * 8192 + 7])
def test_every_truncation_is_detected(size: int) -> None:
    """Cut anywhere (in the header, inside a chunk, on a chunk boundary, the FINAL chunk
    missing), the stream is refused: never a short plaintext."""
    sealed = seal(os.urandom(size))
    cuts = {0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 16, len(sealed) - 1}
    cuts |= {HEADER_SIZE + k * 8209 for k in range(1, size // 8192 + 1)}
    for cut in sorted(c for c in cuts if 0 <= c < len(sealed)):
        with pytest.raises(CryptoError, match=r"cannot decrypt obj: (truncated|wrong|corrupt)"):
            unseal(sealed[:cut])


def test_flipped_bytes_and_trailing_data_are_detected() -> None:
    """Any changed byte fails authentication; so do bytes appended after the end."""
    sealed = seal(os.urandom(3 * 8192 + 100))
    for at in (0, HEADER_SIZE, HEADER_SIZE + 8209 + 5, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[at] ^= 0x01
        with pytest.raises(CryptoError, match="cannot decrypt obj"):
            unseal(bytes(damaged))
    with pytest.raises(CryptoError, match="corrupt object \\(chunk 2"):
        damaged = bytearray(sealed)
        damaged[HEADER_SIZE + 8209 + 5] ^= 0x01
        unseal(bytes(damaged))
    for extra in (b"\0", bytes(8209)):  # the last chunk's length is where the stream ends
        with pytest.raises(CryptoError, match="cannot decrypt obj: corrupt"):
            unseal(sealed + extra)


def test_decryptor_returns_only_whole_authenticated_chunks() -> None:
    """Fed byte by byte, nothing comes out before a whole chunk is in and checked."""
    plain = os.urandom(8192 + 10)
    sealed = seal(plain)
    dec = SodiumDecryptor(KEY)
    outs = [dec.update(sealed[i:i + 1]) for i in range(len(sealed))]
    assert [len(o) for o in outs if o] == [8192]
    assert outs.index(plain[:8192]) == HEADER_SIZE + 8209 - 1
    assert dec.finish() == plain[8192:]


def test_stage_providers_round_trip() -> None:
    """The encrypt/decrypt stages (what backup-push/fetch workers run) use libsodium."""
    settings = crypto(WALG_LIBSODIUM_KEY=TEXT_KEY)
    enc, dec = pickle.loads(pickle.dumps(Encrypt(settings))), Decrypt(settings)
    enc.open()
    dec.open()
    plain = os.urandom(100_000)
    e = enc.new("part_001.tar.lz4")
    sealed = b"".join([*e.update(plain), *e.finish()])
    d = dec.new("part_001.tar.lz4")
    assert b"".join([*d.update(sealed), *d.finish()]) == plain
    bad = Decrypt(crypto(WALG_LIBSODIUM_KEY="x" * 32))
    bad.open()
    with pytest.raises(CryptoError, match=r"part_001\.tar\.lz4: wrong libsodium key"):
        b = bad.new("part_001.tar.lz4")
        list(b.update(sealed)) + list(b.finish())
    enc.close()
    dec.close()
    bad.close()


# --- wal-push and wal-fetch ----------------------------------------------------------------


def wal_segment(seed: int, size: int = 1 << 20) -> bytes:
    """A segment-like file whose first page header names SEGMENT-relative segment ``seed``."""
    from walg.postgres.wal import parse_segment_name
    from walg.postgres.wal_format import LONG_HEADER_SIZE, LongPageHeader

    name = f"0000000100000000000000{seed:02X}"
    timeline, segno = parse_segment_name(name, size)
    header = LongPageHeader(0xD110, 0x0002, timeline, segno * size, 0, 7, size, 8192).pack()
    body = (seed.to_bytes(2, "little") + bytes(range(200)) + os.urandom(60)) * (size // 262 + 1)
    return header + body[LONG_HEADER_SIZE:size]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "store").mkdir()
    return {"WALG_FILE_PREFIX": str(tmp_path / "store"), "WALG_LIBSODIUM_KEY": HEX,
            "WALG_LIBSODIUM_KEY_TRANSFORM": "hex", "WALG_DOWNLOAD_CONCURRENCY": "2"}


def push(tmp_path: Path, env: dict[str, str], seed: int, data: bytes | None = None) -> bytes:
    pg_wal = tmp_path / "pgdata" / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True, exist_ok=True)
    name = f"0000000100000000000000{seed:02X}"
    data = wal_segment(seed) if data is None else data
    (pg_wal / name).write_bytes(data)
    assert main(["wal-push", str(pg_wal / name)], environ=env) == 0
    return data


def test_wal_push_writes_wal_g_format(tmp_path: Path, env: dict[str, str]) -> None:
    """The archived object is compress-then-encrypt: it opens with the key alone (the
    independent reader is in test_libsodium_format.py) into the lz4 frame of the file."""
    data = push(tmp_path, env, 3)
    sealed = (tmp_path / "store" / f"wal_005/{SEGMENT}.lz4").read_bytes()
    with open_decompressed(io.BytesIO(unseal(sealed)), "lz4", "k") as plain:
        assert plain.read() == data


def test_wal_fetch_and_prefetch_decrypt(tmp_path: Path, env: dict[str, str]) -> None:
    """wal-fetch restores what wal-push stored; the next segments are prefetched, decrypted."""
    from walg.wal.prefetch import PrefetchDirs, prefetcher_running

    data = {seed: push(tmp_path, env, seed) for seed in (3, 4, 5)}
    dest = tmp_path / "restore" / "pg_wal" / "RECOVERYXLOG"
    dest.parent.mkdir(parents=True)
    assert main(["wal-fetch", SEGMENT, str(dest)], environ=env) == 0
    assert dest.read_bytes() == data[3]
    dirs = PrefetchDirs.beside(str(dest))
    import time

    deadline = time.monotonic() + 20
    while prefetcher_running(dirs) and time.monotonic() < deadline:
        time.sleep(0.01)
    for seed in (4, 5):
        assert Path(dirs.root, f"0000000100000000000000{seed:02X}").read_bytes() == data[seed]


def test_wal_fetch_with_wrong_key_aborts_and_leaves_nothing(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong key: one ERROR line (and hints), exit 200 (recovery must stop), no file."""
    push(tmp_path, env, 3)
    dest = tmp_path / "restore" / "RECOVERYXLOG"
    dest.parent.mkdir()
    wrong = {**env, "WALG_LIBSODIUM_KEY": "f" * 64}
    capsys.readouterr()
    assert main(["wal-fetch", "--no-prefetch", SEGMENT, str(dest)], environ=wrong) == \
        EX_ABORT_RECOVERY
    err = untimed(capsys.readouterr().err).splitlines()
    assert err[0] == (f"ERROR: cannot decrypt wal_005/{SEGMENT}.lz4: wrong libsodium key? "
                      "(its first chunk fails authentication)")
    assert err[1].startswith("HINT: ") and sum(line.startswith("ERROR") for line in err) == 1
    assert "f" * 64 not in "".join(err)
    assert os.listdir(dest.parent) == []


def test_overwrite_check_decrypts(tmp_path: Path, env: dict[str, str]) -> None:
    """WALG_PREVENT_WAL_OVERWRITE compares through libsodium: identical succeeds, different
    fails, a wrong key is a clear error (never taken as different or equal)."""
    guarded = {**env, "WALG_PREVENT_WAL_OVERWRITE": "true"}
    data = push(tmp_path, guarded, 3)
    path = tmp_path / "pgdata" / "pg_wal" / SEGMENT
    assert push_wal(config.load(guarded), str(path)).outcome is Outcome.IDENTICAL
    path.write_bytes(wal_segment(3))
    with pytest.raises(WalgError, match="other content"):
        push_wal(config.load(guarded), str(path))
    path.write_bytes(data)
    wrong = config.load({**guarded, "WALG_LIBSODIUM_KEY": "f" * 64})
    with pytest.raises(CryptoError, match="wrong libsodium key"):
        push_wal(wrong, str(path))


@pytest.fixture(scope="module")
def pgp_key() -> Iterator[str]:
    """A throwaway armored private key (no passphrase)."""
    with throwaway_key("walg sodium test") as key:
        yield key


def test_with_both_keys_wal_is_openpgp(tmp_path: Path, env: dict[str, str], pgp_key: str) -> None:
    """PGP and libsodium both set: wal-push writes OpenPGP (WAL-G's choice) and wal-fetch
    reads it back with the same settings."""
    both = {**env, "WALG_PGP_KEY": pgp_key}
    data = push(tmp_path, both, 3)
    assert looks_encrypted((tmp_path / "store" / f"wal_005/{SEGMENT}.lz4").read_bytes()[:64])
    dest = tmp_path / "RECOVERYXLOG"
    assert main(["wal-fetch", "--no-prefetch", SEGMENT, str(dest)], environ=both) == 0
    assert dest.read_bytes() == data



def test_history_files_are_read_through_libsodium(tmp_path: Path, env: dict[str, str]) -> None:
    """wal-verify/wal-show read timeline history files with the key too."""
    from walg.storage.file import FileStorage
    from walg.wal.history import history_reader

    text = "1\t0/3000000\tno recovery target specified\n"
    push(tmp_path, env, 3)
    history = tmp_path / "pgdata" / "pg_wal" / "00000002.history"
    history.write_text(text)
    assert main(["wal-push", str(history)], environ=env) == 0
    read, close = history_reader(FileStorage(env["WALG_FILE_PREFIX"]), config.load(env))
    try:
        assert read(2) == text and read(3) is None
    finally:
        close()
