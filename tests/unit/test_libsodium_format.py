"""walg's libsodium streams against an independent reference of WAL-G's format.

The reference below is written from WAL-G's format description only (it uses libsodium
through nacl.bindings directly, never walg's code): crypto_secretstream_xchacha20poly1305,
a 24-byte header, 8192-byte plaintext chunks each sealed with tag MESSAGE to 8192 + 17
bytes, and the rest (0..8191 bytes, possibly empty) sealed last with tag FINAL. Objects walg
writes must open with the reference and the reverse, for every interesting size.
"""

from __future__ import annotations

import os
import random

import pytest
from nacl import bindings as nb

from walg.config.settings import CryptoSettings, Secret
from walg.crypto import Crypter

KEY_HEX = "2e4af6d03c7f73f4a80b0594dee2b4bcd11300bafb8a68b2dda610fc88817fb2"  # WAL-G's testdata
KEY = bytes.fromhex(KEY_HEX)
SETTINGS = CryptoSettings(libsodium_key=Secret(KEY_HEX), libsodium_key_transform="hex")

REF_CHUNK = 8192
REF_ABYTES = 17
REF_HEADER = 24
SIZES = [0, 1, 8191, 8192, 8193, 3 * 8192, 3 * 8192 + 5, random.Random(17).randrange(1, 200_000)]


def reference_encrypt(key: bytes, plain: bytes) -> bytes:
    """WAL-G's writer, from the format description."""
    state = nb.crypto_secretstream_xchacha20poly1305_state()
    out = [nb.crypto_secretstream_xchacha20poly1305_init_push(state, key)]
    full = len(plain) // REF_CHUNK * REF_CHUNK
    for at in range(0, full, REF_CHUNK):
        out.append(nb.crypto_secretstream_xchacha20poly1305_push(
            state, plain[at:at + REF_CHUNK], None,
            nb.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE))
    out.append(nb.crypto_secretstream_xchacha20poly1305_push(
        state, plain[full:], None, nb.crypto_secretstream_xchacha20poly1305_TAG_FINAL))
    return b"".join(out)


def reference_decrypt(key: bytes, sealed: bytes) -> bytes:
    """Opens a stream written as WAL-G writes it, checking every rule of the layout."""
    state = nb.crypto_secretstream_xchacha20poly1305_state()
    nb.crypto_secretstream_xchacha20poly1305_init_pull(state, sealed[:REF_HEADER], key)
    body = sealed[REF_HEADER:]
    step = REF_CHUNK + REF_ABYTES
    chunks = [body[at:at + step] for at in range(0, len(body), step)]
    if not chunks or len(chunks[-1]) == step:  # the FINAL chunk is short, maybe empty
        chunks.append(b"")
    out = []
    for index, chunk in enumerate(chunks):
        plain, tag = nb.crypto_secretstream_xchacha20poly1305_pull(state, chunk)
        last = index == len(chunks) - 1
        expected = (nb.crypto_secretstream_xchacha20poly1305_TAG_FINAL if last
                    else nb.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        assert tag == expected, f"chunk {index} has tag {tag}"
        assert last or len(plain) == REF_CHUNK
        out.append(plain)
    return b"".join(out)


def walg_encrypt(plain: bytes, piece: int) -> bytes:
    with Crypter(SETTINGS) as crypter, crypter.encryptor() as enc:
        out = [enc.update(plain[at:at + piece]) for at in range(0, len(plain), piece)]
        return b"".join(out) + enc.finish()


def walg_decrypt(sealed: bytes, piece: int) -> bytes:
    with Crypter(SETTINGS) as crypter, crypter.decryptor("obj") as dec:
        out = [dec.update(sealed[at:at + piece]) for at in range(0, len(sealed), piece)]
        return b"".join(out) + dec.finish()


def expected_size(n: int) -> int:
    return REF_HEADER + n + REF_ABYTES * (n // REF_CHUNK + 1)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [1, 1000, 8192, 1 << 20])
def test_walg_writes_what_the_reference_reads(size: int, piece: int) -> None:
    """walg-encrypt -> reference-decrypt, whatever sizes the input arrives in; the layout
    (size of every chunk, the tags) is exactly WAL-G's."""
    if piece == 1 and size > 30_000:
        pytest.skip("byte by byte is slow for large inputs")
    plain = os.urandom(size)
    sealed = walg_encrypt(plain, piece)
    assert len(sealed) == expected_size(size)
    assert reference_decrypt(KEY, sealed) == plain


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [7, 8209, 65536, 1 << 20])
def test_walg_reads_what_the_reference_writes(size: int, piece: int) -> None:
    """reference-encrypt -> walg-decrypt, fed in pieces that cut chunks anywhere."""
    plain = os.urandom(size)
    sealed = reference_encrypt(KEY, plain)
    assert len(sealed) == expected_size(size)
    assert walg_decrypt(sealed, piece) == plain


def test_walg_output_is_fresh_each_time() -> None:
    """Each object gets its own random header (a nonce), so equal inputs differ."""
    assert walg_encrypt(b"x" * 100, 100) != walg_encrypt(b"x" * 100, 100)


def test_wal_g_testdata_keys_give_the_same_key() -> None:
    """WAL-G's three test keys (none, base64, hex transforms) decode as WAL-G decodes them."""
    from walg.crypto._sodium import derive_key

    none = b"-+isw)@(s&56x57eh1%y3@r$*qs_&@$--abnm9m@18@9-e%um1"
    assert derive_key(none, "none", "k") == none[:32]
    b64 = b"ca3UjO06O3ItMJ9A5g/bZUCyYW2HHRgAwG9RhDhw5hk="
    assert derive_key(b64, "base64", "k") == bytes.fromhex(
        "71add48ced3a3b722d309f40e60fdb6540b2616d871d1800c06f51843870e619")
    assert derive_key(KEY_HEX.encode(), "hex", "k") == KEY
    assert derive_key(b"a" * 25, "none", "k") == b"a" * 25 + b"\0" * 7
