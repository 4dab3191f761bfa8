"""Reading archived timeline history files (``wal_005/TTTTTTTT.history.<ext>``) as text.

For wal-verify and wal-show, which run in the backup flow and may not import this package:
their commands hand :func:`history_reader` to them. A history file is read like any
archived WAL file (:func:`walg.wal.fetch.open_wal`: whatever compression it was pushed
with, decrypted if it is OpenPGP), and is small, so it is read whole.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from walg.errors import IntegrityError, ObjectNotFound
from walg.postgres.wal import history_file_name
from walg.sizes import CHUNK
from walg.wal.decode import open_plain
from walg.wal.fetch import SharedCrypter, open_wal

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.storage import Storage

__all__ = ["MAX_HISTORY_SIZE", "history_reader"]

MAX_HISTORY_SIZE = 16 * 1024 * 1024
"""A history file larger than this is not one (PostgreSQL's hold a line per ancestor)."""


def history_reader(
    storage: Storage, settings: Settings
) -> tuple[Callable[[int], str | None], Callable[[], None]]:
    """``(read, close)``: ``read(timeline)`` is the text of that timeline's history file,
    None when the archive has none; ``close()`` releases the crypter if one was opened."""
    crypters = SharedCrypter(settings.crypto)

    def read(timeline: int) -> str | None:
        name = history_file_name(timeline)
        try:
            stream, key, method = open_wal(storage, name, settings.compression.method)
        except ObjectNotFound:
            return None
        with stream:
            crypter = functools.partial(crypters.get, key) if crypters.settings.enabled else None
            sealed = crypters.settings.libsodium  # libsodium has no magic: decrypt all
            with open_plain(stream, key, method, crypter, sealed=sealed) as plain:
                data = b""
                while len(data) <= MAX_HISTORY_SIZE and (chunk := plain.read(CHUNK)):
                    data += chunk
        if len(data) > MAX_HISTORY_SIZE:
            raise IntegrityError(f"{key} is over {MAX_HISTORY_SIZE} bytes: not a history file")
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise IntegrityError(f"{key} is not a timeline history file (not text)") from None

    return read, crypters.close
