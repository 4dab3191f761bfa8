"""Fetch one archived WAL file from storage into a local file (``wal-g wal-fetch``).

The object is ``wal_005/<name>.<ext>`` with whatever compression it was pushed with: the
configured method's key is tried first, then the others (lz4, lzma, brotli, none). Each try
opens the object directly, which costs what a stat would (one ``open``, one GET's headers)
and needs no listing. The stored bytes are compress-then-encrypt, so an OpenPGP message is
recognised from the object's first bytes, decrypted, then decompressed
(:func:`walg.wal.decode.open_plain`, which wal-push's overwrite check reads with too).

The result is written to a temporary file in the destination's directory, fsynced, renamed
over the destination and the directory fsynced; on any failure the temporary file is removed,
so the destination is never partial or corrupt. Memory stays bounded by one 1 MiB buffer
plus the decompressor's state, whatever the object's size.

Before the rename, the file is checked against its name (a segment's size and first page
header, a history file's lines: :mod:`walg.postgres.wal_format`); one that fails raises
:class:`~walg.errors.WalFileInvalid` and is not left behind.

A missing WAL file raises :class:`~walg.errors.ObjectNotFound` (exit 74: recovery then ends
normally). An object stored with a method walg cannot read (zstd, gzip, lzo from WAL-G)
raises ConfigError instead, so that recovery does not silently stop early.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, cast

from walg.compression import unreadable_error
from walg.errors import ObjectNotFound, WalFileInvalid, WalgError
from walg.format.layout import wal_keys
from walg.fsutil import fsync_dir
from walg.sizes import CHUNK
from walg.wal.decode import open_plain

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.config.settings import CryptoSettings
    from walg.crypto import Crypter
    from walg.storage import Storage

__all__ = ["HEAD_SIZE", "SharedCrypter", "download", "fetch_wal", "open_wal"]

HEAD_SIZE: Final = 64
"""How many leading bytes of the fetched file :func:`download_to_fd` returns."""


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview) -> int: ...


class SharedCrypter:
    """One :class:`~walg.crypto.Crypter`, opened on first need and shared by threads.

    Opening imports the key (a gpg run), so it happens only if an encrypted object is met;
    each decryption still runs its own gpg process.
    """

    def __init__(self, settings: CryptoSettings) -> None:
        self.settings = settings
        self._crypter: Crypter | None = None
        self._lock = threading.Lock()

    def get(self, name: str) -> Crypter:
        """The open Crypter; CryptoError naming object ``name`` if no key is configured."""
        if not self.settings.enabled:
            from walg.crypto import missing_key_error

            raise missing_key_error(name)
        with self._lock:
            if self._crypter is None:
                from walg.crypto import Crypter

                self._crypter = Crypter(self.settings).open()
            return self._crypter

    def close(self) -> None:
        """Close the Crypter if it was opened. Idempotent."""
        with self._lock:
            if self._crypter is not None:
                self._crypter.close()
                self._crypter = None


def open_wal(storage: Storage, name: str, preferred: str) -> tuple[BinaryIO, str, str]:
    """``(stream, key, method)`` of the archived copy of WAL file ``name``.

    Keys are tried with ``preferred`` (the configured method) first. Raises ObjectNotFound
    when no copy exists, ConfigError when only a copy walg cannot read exists.
    """
    try:
        keys = wal_keys(name, preferred)
    except ValueError:
        raise WalgError(
            f"invalid WAL file name {name!r}",
            hint="restore_command passes %f, a file name such as 000000010000000000000001",
        ) from None
    candidates = [k for k in keys if k.readable]
    for key, method, _ in candidates:
        with contextlib.suppress(ObjectNotFound):
            return storage.read_object(key), key, method
    for key, method, readable in keys:
        if not readable and storage.exists(key):
            raise unreadable_error(method, key)  # zstd...: one clear line, nothing decoded
    storage.check_present()  # an unmounted archive is a failure, not the end of the WAL
    tried = ", ".join(k.key for k in candidates)
    raise ObjectNotFound(
        f"WAL file {name} is not in the archive at {storage.url} (tried {tried})",
        hint="at the end of recovery this is expected; otherwise check that the storage "
        "prefix names the archive wal-push writes to",
    )


def _copy(src: BinaryIO, fd: int) -> bytes:
    """Write everything ``src`` gives to ``fd``; return its first HEAD_SIZE bytes."""
    buffer = memoryview(bytearray(CHUNK))
    reader = cast(_ReadInto, src)
    head = b""
    while n := reader.readinto(buffer):
        if len(head) < HEAD_SIZE:
            head += bytes(buffer[: HEAD_SIZE - len(head)])
        data = buffer[:n]
        while data:
            data = data[os.write(fd, data) :]
    return head


def download(
    storage: Storage,
    settings: Settings,
    name: str,
    path: str,
    crypters: SharedCrypter,
    *,
    label: str | None = None,
    exclusive: bool = True,
) -> bytes:
    """Write WAL file ``name`` from storage, decrypted and decompressed, to the file
    ``path``, fsynced; return its first :data:`HEAD_SIZE` bytes (for page header checks).

    ``path`` is created only once the object is found; it must not exist if ``exclusive``,
    else it is truncated. On any failure it is removed. ``label`` names it in messages.
    """
    label = label or path
    stream, key, method = open_wal(storage, name, settings.compression.method)
    with stream:
        fd = _create(path, label, exclusive)
        try:
            crypter = functools.partial(crypters.get, key) if crypters.settings.enabled else None
            sealed = crypters.settings.libsodium
            with open_plain(stream, key, method, crypter, sealed=sealed) as plain:
                head = _copy(plain, fd)
            if settings.wal.check_content:
                _check_fetched(name, key, fd, head)
            os.fsync(fd)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.unlink(path)
            if isinstance(err, OSError):
                raise _local_error(label, err) from err
            raise
        finally:
            os.close(fd)
    return head


def _check_fetched(name: str, key: str, fd: int, head: bytes) -> None:
    """WalFileInvalid unless the file written to ``fd`` can be WAL file ``name``
    (:func:`walg.postgres.wal_format.check_wal_file`)."""
    from walg.postgres.wal_format import check_wal_file, head_size

    wanted = head_size(name)
    if not wanted:
        return
    size = os.fstat(fd).st_size
    if len(head) < min(wanted, size):
        head = os.pread(fd, wanted, 0)
    try:
        check_wal_file(name, size, head)
    except ValueError as err:
        raise WalFileInvalid(
            f"archived object {key} is not a valid WAL file {name}: {err}",
            hint="the archived copy is damaged or misnamed; PostgreSQL must not replay past "
            "it: put a good copy of the file in the archive (from the primary's pg_wal, or "
            "another archive) and start the server again",
        ) from None


def fetch_wal(storage: Storage, settings: Settings, name: str, destination: str) -> bytes:
    """Fetch WAL file ``name`` to ``destination`` atomically; return its first bytes.

    Raises ObjectNotFound if it is not archived; on any failure nothing is left behind.
    """
    folder = os.path.dirname(destination) or "."
    base = os.path.basename(destination)
    temp = os.path.join(folder, f".{base}.walg-tmp-{os.urandom(4).hex()}")
    crypters = SharedCrypter(settings.crypto)
    try:
        head = download(storage, settings, name, temp, crypters, label=destination)
    finally:
        crypters.close()
    try:
        os.replace(temp, destination)
        fsync_dir(folder)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            raise _local_error(destination, err) from err
        raise
    return head


def _create(path: str, label: str, exclusive: bool) -> int:
    # O_RDWR: _check_fetched reads back what lies beyond the first HEAD_SIZE bytes
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        return os.open(path, flags, 0o666)
    except OSError as err:
        raise _local_error(label, err) from err


def _local_error(path: str, err: OSError) -> WalgError:
    return WalgError(
        f"cannot write {path}: {err.strerror or err}",
        hint="check the free space and the permissions of the directory",
    )
