"""Transform providers for :class:`~walg.stages.transform.PartTransform`: compression and
encryption (OpenPGP or libsodium), built from picklable settings, with their resources made
in the worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from walg import compression
from walg.config.settings import CryptoSettings
from walg.stages.tar_writer import CHUNK_SIZE

if TYPE_CHECKING:
    from walg.crypto import Crypter, StreamTransform

__all__ = ["Compress", "Decompress", "Decrypt", "Encrypt"]


class _Compressing:
    """A backup part's compressor. lz4 frames carry a checksum per block (xxh32 of the
    bytes stored) instead of one over the whole content: on compressible data it hashes a
    tenth of the bytes, and it still covers every stored byte, so any damage to the object
    fails its decoding, even where no file's CRC-32C would see it (a tar header, padding)."""

    def __init__(self, method: str) -> None:
        self._c = compression.new_compressor(method, checksum="blocks")

    def update(self, data: bytes | bytearray) -> Iterator[bytes]:
        yield self._c.compress(data)

    def finish(self) -> Iterator[bytes]:
        yield self._c.flush()

    def abort(self) -> None:
        pass


class _Decompressing:
    """Emits at most CHUNK_SIZE bytes per output, however compressible the input."""

    def __init__(self, method: str, name: str) -> None:
        self._d = compression.new_decompressor(method, name)

    def update(self, data: bytes | bytearray) -> Iterator[bytes]:
        yield self._d.decompress(data, CHUNK_SIZE)
        while not self._d.needs_input:
            yield self._d.decompress(b"", CHUNK_SIZE)

    def finish(self) -> Iterator[bytes]:
        while not self._d.needs_input:
            yield self._d.decompress(b"", CHUNK_SIZE)
        self._d.finish()

    def abort(self) -> None:
        pass


class Compress:
    """Compress each object with ``method`` (lz4, lzma, brotli, none). Made in the parent:
    it loads the codec there, so that the forked workers inherit it."""

    def __init__(self, method: str) -> None:
        compression.extension(method)  # fail in the parent on an unknown method
        self.method = method
        compression.new_compressor(method, checksum="blocks")  # the library, the lz4 header

    def open(self) -> None:
        pass

    def new(self, name: str) -> _Compressing:
        return _Compressing(self.method)

    def close(self) -> None:
        pass


class Decompress:
    """Decompress each object with ``method``; corrupt or truncated data raises
    IntegrityError naming the object. Made in the parent, which loads the codec for the
    forked workers."""

    def __init__(self, method: str) -> None:
        compression.extension(method)
        self.method = method
        compression.new_decompressor(method)

    def open(self) -> None:
        pass

    def new(self, name: str) -> _Decompressing:
        return _Decompressing(self.method, name)

    def close(self) -> None:
        pass


class _Crypting:
    def __init__(self, stream: StreamTransform) -> None:
        self._s = stream

    def update(self, data: bytes | bytearray) -> Iterator[bytes]:
        yield self._s.update(data)

    def finish(self) -> Iterator[bytes]:
        yield self._s.finish()

    def abort(self) -> None:
        self._s.abort()


class _CryptoProvider:
    def __init__(self, settings: CryptoSettings, gnupghome: str | None = None) -> None:
        self.settings = settings
        self.gnupghome = gnupghome
        self._crypter: Crypter | None = None

    def open(self) -> None:
        from walg.crypto import Crypter

        crypter = Crypter(self.settings, gnupghome=self.gnupghome)
        crypter.open()
        self._crypter = crypter

    def close(self) -> None:
        if self._crypter is not None:
            self._crypter.close()
            self._crypter = None

    def _ready(self) -> Crypter:
        assert self._crypter is not None, "open() runs before new()"
        return self._crypter


class Encrypt(_CryptoProvider):
    """Encrypt each object to the configured OpenPGP key (one gpg process per object) or
    with the libsodium key (in the worker itself)."""

    def new(self, name: str) -> _Crypting:
        return _Crypting(self._ready().encryptor())


class Decrypt(_CryptoProvider):
    """Decrypt each object with the configured key; a wrong key raises CryptoError."""

    def new(self, name: str) -> _Crypting:
        return _Crypting(self._ready().decryptor(name))
