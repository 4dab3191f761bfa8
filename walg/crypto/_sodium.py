"""libsodium encryption of streams, byte for byte as WAL-G's ``internal/crypto/libsodium``.

The format is libsodium's ``crypto_secretstream_xchacha20poly1305``, nothing around it: a
24-byte header, then the plaintext cut in chunks of 8192 bytes, each sealed to 8192 + 17
bytes with tag MESSAGE; the rest (0 to 8191 bytes, so an empty chunk when the plaintext is
a multiple of 8192) is sealed last with tag FINAL. There is no magic: an object is known
to be encrypted only from the configuration (as in WAL-G, where a configured crypter
decrypts everything it reads).

Reading is stricter than WAL-G's reader (which accepts a stream cut at a chunk boundary):
the stream must end with its FINAL chunk and nothing after it, so a truncated object is an
error, never a short file. Every chunk is authenticated before its bytes are returned.

The key (``WALG_LIBSODIUM_KEY`` or the file ``WALG_LIBSODIUM_KEY_PATH``, whose content is
stripped of surrounding whitespace) becomes 32 bytes by ``WALG_LIBSODIUM_KEY_TRANSFORM``:
``hex`` and ``base64`` must decode to exactly 32 bytes; ``none`` (WAL-G's default) takes
the text's bytes, at least 25, zero-padded or cut to 32. No message ever shows key bytes.
"""

from __future__ import annotations

import base64
import binascii
from types import TracebackType
from typing import Final, Self

from nacl import bindings as _nacl
from nacl import exceptions as _nacl_errors

from walg.config.settings import CryptoSettings
from walg.errors import ConfigError, CryptoError

__all__ = [
    "ABYTES",
    "CHUNK_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MIN_KEY_LENGTH",
    "SodiumDecryptor",
    "SodiumEncryptor",
    "derive_key",
    "load_key",
]

CHUNK_SIZE: Final = 8192  # plaintext bytes per chunk (WAL-G's chunkSize)
ABYTES: Final = _nacl.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
HEADER_SIZE: Final = _nacl.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
KEY_SIZE: Final = _nacl.crypto_secretstream_xchacha20poly1305_KEYBYTES  # 32
MIN_KEY_LENGTH: Final = 25  # WAL-G's minimalKeyLength, for the "none" transform
SEALED_SIZE: Final = CHUNK_SIZE + ABYTES
TAG_MESSAGE: Final = _nacl.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL: Final = _nacl.crypto_secretstream_xchacha20poly1305_TAG_FINAL

_GENERATE = (
    "for a random key: openssl rand -hex 32 with WALG_LIBSODIUM_KEY_TRANSFORM=hex "
    "(or openssl rand -base64 32 with base64)"
)


def derive_key(text: bytes, transform: str, source: str) -> bytes:
    """The 32-byte key from the configured ``text`` by ``transform`` (none, base64, hex).

    ConfigError naming ``source`` (the variable or file) if it cannot be one; the message
    tells lengths, never the key."""
    if transform == "none":
        if len(text) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{source} is too short for WALG_LIBSODIUM_KEY_TRANSFORM=none: "
                f"{len(text)} bytes, at least {MIN_KEY_LENGTH} are needed",
                hint=_GENERATE,
            )
        return text[:KEY_SIZE].ljust(KEY_SIZE, b"\0")
    try:
        if transform == "base64":  # Go's StdEncoding: padded, and it skips CR and LF
            key = base64.b64decode(text.replace(b"\r", b"").replace(b"\n", b""), validate=True)
        elif transform == "hex":
            key = binascii.unhexlify(text)
        else:
            raise ConfigError(
                f"WALG_LIBSODIUM_KEY_TRANSFORM={transform!r} is not supported",
                hint="use none, base64 or hex",
            )
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{source} is not valid {transform} (WALG_LIBSODIUM_KEY_TRANSFORM={transform})",
            hint=_GENERATE,
        ) from None
    if len(key) != KEY_SIZE:
        raise ConfigError(
            f"{source} must decode to exactly {KEY_SIZE} bytes, got {len(key)} "
            f"(WALG_LIBSODIUM_KEY_TRANSFORM={transform})",
            hint=_GENERATE,
        )
    return key


def load_key(settings: CryptoSettings) -> bytes:
    """The key WAL-G would use: WALG_LIBSODIUM_KEY, else the content of the file
    WALG_LIBSODIUM_KEY_PATH stripped of surrounding whitespace, transformed."""
    transform = settings.libsodium_key_transform
    if settings.libsodium_key is not None:
        text = settings.libsodium_key.reveal().encode("utf-8", "surrogateescape")
        return derive_key(text, transform, "WALG_LIBSODIUM_KEY")
    path = settings.libsodium_key_path
    if path is None:
        raise ConfigError("no libsodium key is configured",
                          hint="set WALG_LIBSODIUM_KEY or WALG_LIBSODIUM_KEY_PATH")
    try:
        with open(path, "rb") as file:
            text = file.read().strip()
    except OSError as err:
        raise ConfigError(
            f"cannot read the libsodium key file {path} (WALG_LIBSODIUM_KEY_PATH): "
            f"{err.strerror or err}",
            hint="check the path and that this user may read it",
        ) from None
    return derive_key(text, transform, f"the key in {path} (WALG_LIBSODIUM_KEY_PATH)")


class _Stream:
    """What both directions share: a context manager whose exit aborts."""

    def abort(self) -> None:
        """Stop early; nothing to release (no process, no file)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class SodiumEncryptor(_Stream):
    """Encrypts what it is fed: the header with the first output, a MESSAGE chunk each
    time 8192 bytes are in, the rest as the FINAL chunk at ``finish()``."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._state = _nacl.crypto_secretstream_xchacha20poly1305_state()
        self._header: bytes | None = None
        self._pending = bytearray()
        self._done = False

    def _start(self, out: list[bytes]) -> None:
        if self._header is None:
            self._header = _nacl.crypto_secretstream_xchacha20poly1305_init_push(
                self._state, self._key
            )
            out.append(self._header)

    def _seal(self, chunk: bytes, tag: int) -> bytes:
        return _nacl.crypto_secretstream_xchacha20poly1305_push(self._state, chunk, None, tag)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed plaintext; return the ciphertext sealed so far (possibly ``b""``)."""
        if self._done:
            raise ValueError("update() after finish()")
        view = memoryview(data).cast("B")
        out: list[bytes] = []
        self._start(out)
        pending, position = self._pending, 0
        if pending:
            position = min(CHUNK_SIZE - len(pending), len(view))
            pending += view[:position]
            if len(pending) < CHUNK_SIZE:
                return b"".join(out)
            out.append(self._seal(bytes(pending), TAG_MESSAGE))
            pending.clear()
        while len(view) - position >= CHUNK_SIZE:
            out.append(self._seal(bytes(view[position:position + CHUNK_SIZE]), TAG_MESSAGE))
            position += CHUNK_SIZE
        pending += view[position:]
        return b"".join(out)

    def finish(self) -> bytes:
        """Seal the rest (maybe nothing) as the FINAL chunk; return the last ciphertext."""
        if self._done:
            raise ValueError("finish() called twice")
        out: list[bytes] = []
        self._start(out)
        out.append(self._seal(bytes(self._pending), TAG_FINAL))
        self._pending.clear()
        self._done = True
        return b"".join(out)


class SodiumDecryptor(_Stream):
    """Decrypts what it is fed; returns only authenticated plaintext. CryptoError naming
    object ``name`` for a wrong key, a corrupt or truncated stream, or bytes after its end."""

    def __init__(self, key: bytes, name: str = "") -> None:
        self._key = key
        self._name = name or "the object"
        self._state = _nacl.crypto_secretstream_xchacha20poly1305_state()
        self._started = False
        self._buffer = bytearray()
        self._chunks = 0  # chunks opened so far
        self._final = False
        self._done = False

    def _error(self, what: str, hint: str) -> CryptoError:
        return CryptoError(f"cannot decrypt {self._name}: {what}", hint=hint)

    def _open(self, sealed: bytes) -> bytes:
        if self._final:
            raise self._error("data after the end of its libsodium stream (corrupt object)",
                              "the stored object is damaged: restore it from another copy")
        try:
            plain, tag = _nacl.crypto_secretstream_xchacha20poly1305_pull(self._state, sealed)
        except (_nacl_errors.RuntimeError, _nacl_errors.ValueError):
            if self._chunks == 0:
                raise self._error(
                    "wrong libsodium key? (its first chunk fails authentication)",
                    "set WALG_LIBSODIUM_KEY (or _PATH) and WALG_LIBSODIUM_KEY_TRANSFORM to "
                    "the key it was written with; an object written without libsodium "
                    "cannot be read while a libsodium key is set",
                ) from None
            raise self._error(
                f"corrupt object (chunk {self._chunks + 1} fails authentication)",
                "the stored object is damaged: restore it from another copy",
            ) from None
        self._chunks += 1
        self._final = tag == TAG_FINAL
        return plain

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed ciphertext; return the plaintext of every whole chunk so far."""
        if self._done:
            raise ValueError("update() after finish()")
        buffer = self._buffer
        buffer += data
        position = 0
        if not self._started:
            if len(buffer) < HEADER_SIZE:
                return b""
            header = bytes(buffer[:HEADER_SIZE])
            _nacl.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, self._key)
            self._started, position = True, HEADER_SIZE
        out = []
        while len(buffer) - position >= SEALED_SIZE:
            out.append(self._open(bytes(buffer[position:position + SEALED_SIZE])))
            position += SEALED_SIZE
        del buffer[:position]
        return b"".join(out)

    def finish(self) -> bytes:
        """Open the last chunk; CryptoError unless the stream ended exactly after FINAL."""
        if self._done:
            raise ValueError("finish() called twice")
        self._done = True
        rest = bytes(self._buffer)
        self._buffer.clear()
        truncated = "the stored object is incomplete: restore it from another copy"
        if not self._started:
            raise self._error(f"truncated: {len(rest)} bytes, shorter than a libsodium "
                              f"header ({HEADER_SIZE} bytes)", truncated)
        if self._final:
            if rest:
                self._open(rest)  # raises: data after the end
            return b""
        if len(rest) < ABYTES:
            raise self._error("truncated libsodium stream (it ends without its final chunk)",
                              truncated)
        plain = self._open(rest)
        if not self._final:
            raise self._error("truncated libsodium stream (it ends without its final chunk)",
                              truncated)
        return plain
