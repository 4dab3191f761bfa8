"""The Crypter: OpenPGP or libsodium encryption and decryption of byte streams, as WAL-G
does them (OpenPGP when both are configured, as WAL-G chooses: see ``CryptoSettings``).

A Crypter is built from picklable settings and holds no resource until ``open()``, so a
pipeline stage can carry it to a worker and open it there. ``encryptor()`` and
``decryptor()`` each return a :class:`StreamTransform`: with OpenPGP, one gpg process;
with libsodium (``walg.crypto._sodium``), an in-process secretstream.

What is written is a binary OpenPGP message (no armor, no compression: the data is already
compressed) encrypted to every key of the configured key file, readable by plain
``gpg --decrypt`` and by WAL-G (given a key type its OpenPGP library supports).
"""

from __future__ import annotations

import io
import os
import weakref
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from walg.config.settings import CryptoSettings
from walg.crypto._keys import Keyring, open_keyring
from walg.crypto._process import GpgOutcome, GpgStream, Judge
from walg.crypto._verdict import DecryptContext, judge_decrypt, judge_encrypt
from walg.logs import get_logger
from walg.sizes import CHUNK

if TYPE_CHECKING:
    from walg.crypto._sodium import SodiumDecryptor, SodiumEncryptor

__all__ = ["Crypter", "StreamTransform"]

_log = get_logger("walg.crypto")


class StreamTransform(Protocol):
    """Chunks in, chunks out: what a pipeline stage drives (see ``GpgStream``)."""

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed a chunk; return the output ready so far (possibly ``b""``)."""
        ...

    def finish(self) -> bytes:
        """End the input; return the rest of the output; raise if the result is bad."""
        ...

    def abort(self) -> None:
        """Stop early and release everything."""
        ...


class Crypter:
    """Encrypts and decrypts streams with the key in ``settings``.

    ``gnupghome`` is the keyring WALG_GPG_KEY_ID refers to (None: gpg's default, which
    honours GNUPGHOME); keys from WALG_PGP_KEY / WALG_PGP_KEY_PATH always go to a private
    temporary home. ``idle_timeout`` bounds how long gpg may make no progress at all.
    """

    def __init__(
        self,
        settings: CryptoSettings,
        *,
        gnupghome: str | None = None,
        gpgbinary: str = "gpg",
        idle_timeout: float = 120.0,
    ) -> None:
        self.settings = settings
        self.gnupghome = gnupghome
        self.gpgbinary = gpgbinary
        self.idle_timeout = idle_timeout
        self._keyring: Keyring | None = None
        self._sodium_key: bytes | None = None  # the 32-byte key, when libsodium is in use
        self._streams: weakref.WeakSet[GpgStream] = weakref.WeakSet()
        self._finalizer: Callable[[], object] | None = None  # a weakref.finalize

    def __getstate__(self) -> dict[str, object]:
        if self.is_open:
            raise TypeError("an open Crypter cannot be pickled; pickle it before open()")
        return {
            "settings": self.settings,
            "gnupghome": self.gnupghome,
            "gpgbinary": self.gpgbinary,
            "idle_timeout": self.idle_timeout,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(  # type: ignore[misc]  # rebuilding from the picklable settings
            cast(CryptoSettings, state["settings"]),
            gnupghome=cast("str | None", state["gnupghome"]),
            gpgbinary=cast(str, state["gpgbinary"]),
            idle_timeout=cast(float, state["idle_timeout"]),
        )

    @property
    def is_open(self) -> bool:
        """True between ``open()`` and ``close()``."""
        return self._keyring is not None or self._sodium_key is not None

    @property
    def sealed(self) -> bool:
        """True when every object read is encrypted (libsodium: no magic to recognise it by;
        as in WAL-G, a configured libsodium key decrypts everything)."""
        return self.settings.libsodium

    @property
    def gpg_home(self) -> str | None:
        """The GNUPGHOME in use (a temporary one for WALG_PGP_KEY*), for diagnostics."""
        return None if self._keyring is None else self._keyring.home

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of the configured keys (the recipients of what is encrypted)."""
        return () if self._keyring is None else self._keyring.info.fingerprints

    def open(self) -> Crypter:
        """Import or look up the key; CryptoError (ConfigError for a libsodium key) if it is
        missing or unusable."""
        if self.settings.libsodium:
            if self._sodium_key is None:
                from walg.crypto._sodium import load_key

                self._sodium_key = load_key(self.settings)
                _log.debug("crypto.opened", source="libsodium")
            return self
        if self._keyring is None:
            self._keyring = open_keyring(
                self.settings, gnupghome=self.gnupghome, gpgbinary=self.gpgbinary
            )
            self._finalizer = weakref.finalize(self, self._keyring.close)
            _log.debug(
                "crypto.opened",
                source=self._keyring.source,
                keys=list(self._keyring.info.fingerprints),
            )
        return self

    def close(self) -> None:
        """Stop any gpg still running and remove the temporary home. Idempotent."""
        self._sodium_key = None
        if self._keyring is None:
            return
        if os.getpid() == self._keyring.owner_pid:
            for stream in list(self._streams):
                stream.abort()
        self._streams.clear()
        if self._finalizer is not None:
            self._finalizer()
        self._keyring = None

    def __enter__(self) -> Crypter:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ready(self) -> Keyring:
        if self._keyring is None:
            raise RuntimeError("Crypter.open() must be called first")
        return self._keyring

    def _start(self, argv: list[str], judge: Judge, passphrase: str | None) -> GpgStream:
        stream = GpgStream(argv, judge=judge, passphrase=passphrase, idle_timeout=self.idle_timeout)
        self._streams.add(stream)
        return stream

    def _sodium(self) -> bytes | None:
        if self.settings.libsodium:
            if self._sodium_key is None:
                raise RuntimeError("Crypter.open() must be called first")
            return self._sodium_key
        return None

    def encryptor(self) -> GpgStream | SodiumEncryptor:
        """A running gpg that encrypts what it is fed to the configured key(s), or a
        libsodium secretstream encryptor."""
        if (key := self._sodium()) is not None:
            from walg.crypto._sodium import SodiumEncryptor

            return SodiumEncryptor(key)
        keyring = self._ready()
        recipients = [arg for fpr in keyring.info.fingerprints for arg in ("--recipient", fpr)]
        argv = [
            keyring.gpgbinary,
            *keyring.options(),
            "--trust-model", "always",
            "--compress-algo", "none",
            "--no-armor",
            "--no-encrypt-to",
            "--encrypt",
            *recipients,
        ]  # fmt: skip
        return self._start(argv, judge_encrypt, None)

    def decryptor(self, name: str = "") -> GpgStream | SodiumDecryptor:
        """A running gpg that decrypts what it is fed (and checks its integrity at the end),
        or a libsodium secretstream decryptor (which checks each chunk and the end).

        ``name`` (the object's storage key) is named in error messages when given.
        """
        if (key := self._sodium()) is not None:
            from walg.crypto._sodium import SodiumDecryptor

            return SodiumDecryptor(key, name)
        keyring = self._ready()
        secret = self.settings.pgp_key_passphrase
        context = DecryptContext(keyring.source, keyring.info, secret is not None, name)
        # Without a passphrase, never let gpg-agent ask for one: wal-g runs unattended.
        pinentry = ["--pinentry-mode", "error"] if secret is None else []
        argv = [
            keyring.gpgbinary,
            *keyring.options(),
            *pinentry,
            "--no-auto-key-retrieve",
            "--decrypt",
        ]

        def judge(outcome: GpgOutcome) -> None:
            judge_decrypt(outcome, context)

        return self._start(argv, judge, None if secret is None else secret.reveal())

    def encrypt_stream(
        self, src: BinaryIO, chunk_size: int = CHUNK
    ) -> Generator[bytes, None, None]:
        """Encrypted chunks of everything ``src`` holds (gpg starts at the first ``next``)."""
        return _transformed(self.encryptor, src, chunk_size)

    def decrypt_stream(
        self, src: BinaryIO, chunk_size: int = CHUNK, name: str = ""
    ) -> Generator[bytes, None, None]:
        """Decrypted chunks of ``src``; the last ``next`` raises CryptoError if it was bad."""
        return _transformed(lambda: self.decryptor(name), src, chunk_size)

    def open_decrypted(self, src: BinaryIO, chunk_size: int = CHUNK, name: str = "") -> BinaryIO:
        """A readable stream of ``src`` decrypted; ``src`` stays open when it is closed.

        Reading to the end raises CryptoError if the object was corrupt, truncated or not
        for this key; data read before that point is not yet authenticated.
        """
        raw = _DecryptingReader(src, self.decryptor(name), chunk_size)
        return cast(BinaryIO, io.BufferedReader(raw, chunk_size))


def _transformed(
    start: Callable[[], GpgStream | SodiumEncryptor | SodiumDecryptor],
    src: BinaryIO,
    chunk_size: int,
) -> Generator[bytes, None, None]:
    with start() as transform:
        while chunk := src.read(chunk_size):
            out = transform.update(chunk)
            if out:
                yield out
        out = transform.finish()
        if out:
            yield out


class _DecryptingReader(io.RawIOBase):
    """Pulls ``src`` through a transform as the reader asks for data."""

    def __init__(self, src: BinaryIO, transform: StreamTransform, chunk_size: int) -> None:
        super().__init__()
        self._src = src
        self._transform = transform
        self._chunk_size = chunk_size
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            data = self._src.read(self._chunk_size)
            if data:
                self._pending = memoryview(self._transform.update(data))
            else:
                self._done = True
                self._pending = memoryview(self._transform.finish())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._transform.abort()  # a no-op after finish()
        super().close()
