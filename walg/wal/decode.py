"""Reading an archived WAL object back: recognise OpenPGP, decrypt, decompress.

The one implementation of that rule, used by wal-fetch (which writes the bytes out) and by
wal-push's overwrite check (which compares them with the local file), so both read every
archived copy alike. Stored bytes are compress-then-encrypt, so an OpenPGP message is
recognised from the object's first bytes. Brotli has no magic: a plain brotli stream may
begin like OpenPGP; without a key configured it is decoded as plain brotli, to its end even
when the reader stops early (a comparison that found a difference), and only if that fails
is the object taken as encrypted (the "no PGP key" error). libsodium objects have no magic:
with a libsodium key configured (``sealed``) every object is decrypted, as WAL-G does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Final, cast

from walg.compression import open_decompressed
from walg.errors import IntegrityError
from walg.sizes import CHUNK

if TYPE_CHECKING:
    from walg.crypto import Crypter

__all__ = ["SNIFF", "open_plain"]

SNIFF: Final = 64  # bytes of the stored object looked at to recognise OpenPGP


class _Prepended:
    """A read-only stream: ``head`` followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            data, self._head = self._head + self._stream.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data

    def close(self) -> None:
        self._stream.close()


def _looks_encrypted(head: bytes) -> bool:
    """walg.crypto.looks_encrypted, without importing walg.crypto (~15 ms) for the common
    case: an OpenPGP message starts with a packet tag (high bit set) or with armor."""
    if not head or not (head[0] & 0x80 or head.lstrip().startswith(b"-----")):
        return False
    from walg.crypto import looks_encrypted

    return looks_encrypted(head)


@contextlib.contextmanager
def open_plain(
    stream: BinaryIO,
    key: str,
    method: str,
    crypter: Callable[[], Crypter] | None,
    *,
    sealed: bool = False,
) -> Iterator[BinaryIO]:
    """The plain bytes of stored object ``key`` (compressed with ``method``): decrypted if
    it is OpenPGP, or always when ``sealed`` (a libsodium key is configured), decompressed.
    ``crypter`` gives the open Crypter (called only for an encrypted object); None when no
    key is configured."""
    head = stream.read(SNIFF)
    source = cast(BinaryIO, _Prepended(head, stream))
    if not (sealed and crypter is not None) and not _looks_encrypted(head):
        with open_decompressed(source, method, key) as out:
            yield out
        return
    if crypter is None:
        from walg.crypto import missing_key_error

        if method != "brotli":
            raise missing_key_error(key)
        try:  # no magic: a plain brotli stream may look like OpenPGP; decide by decoding it
            with open_decompressed(source, method, key) as out:
                yield out
                while out.read(CHUNK):  # all of it, even if the caller stopped early
                    pass
        except IntegrityError as err:
            raise missing_key_error(key) from err
        return
    plain = crypter().open_decrypted(source, CHUNK, name=key)
    try:
        with open_decompressed(plain, method, key) as out:
            yield out
    finally:
        plain.close()
