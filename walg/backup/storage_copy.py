"""``wal-g st copy --from FILE --to FILE``: copy objects between two storages, each named by
its own config file, as WAL-G's storage tools do (``internal/storagetools``
``HandleCopyObjects``).

Every object of the source whose key (relative to its prefix) starts with ``--prefix`` is
written under the same key in the target, replacing what is there. Bytes are copied as
stored unless asked: ``--decrypt-source`` decrypts with the key of the running command's
own settings (as WAL-G's ``DecryptBytes`` does), ``--encrypt-source`` encrypts with the key
the target's file names (WAL-G's name for that flag). Objects are streamed, never held whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, cast

from walg.backup.storage_tools import _ChunkReader, open_object
from walg.config.settings import CryptoSettings
from walg.logs import get_logger

if TYPE_CHECKING:
    from walg.crypto import Crypter
    from walg.storage import Storage

__all__ = ["copy_objects"]

_log = get_logger("walg.st")


def copy_objects(
    source: Storage,
    target: Storage,
    prefix: str,
    *,
    decrypt: CryptoSettings | None,
    crypter: Crypter | None,
) -> int:
    """Copy the objects of ``source`` whose key starts with ``prefix`` to ``target``;
    decrypt them with ``decrypt`` and encrypt them with ``crypter`` when given. Returns how
    many objects were copied."""
    _log.info(f"Collecting files with prefix {prefix}.")
    keys = [o.name for o in source.list_objects() if o.name.startswith(prefix)]
    for key in keys:
        with open_object(
            source,
            key,
            decrypt=decrypt is not None,
            decompress=False,
            crypto=decrypt or CryptoSettings(),
        ) as data:
            stream: BinaryIO = data
            if crypter is not None:
                stream = cast(BinaryIO, _ChunkReader(crypter.encrypt_stream(data)))
            target.put_object(key, stream)
        _log.debug("copied", object=key)
    _log.info(f"Successfully copied {len(keys)} objects")
    return len(keys)
