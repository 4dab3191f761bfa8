"""What backup-push checks before it starts a backup in PostgreSQL.

A backup started with pg_backup_start forces a checkpoint, holds WAL, and must be stopped;
one that then fails at its first encrypted part or its first upload has cost the server
all that for nothing, and its error comes minutes late. So before it connects to the
server, backup-push proves:

- the encryption key encrypts: the key is read and imported (OpenPGP through gpg) or
  derived (libsodium: its length and WALG_LIBSODIUM_KEY_TRANSFORM), and a few bytes are
  encrypted with it, as every part will be;
- the storage takes an object: a tiny one is written at the storage prefix
  (:data:`WRITE_CHECK_KEY`, outside WAL-G's basebackups_005/ and wal_005/) and deleted.
  That proves the storage reachable (within WALG_STORAGE_RETRY_BUDGET), the bucket or
  folder there (a file storage folder is created, as a push creates it), and the
  credentials allowed to write. Deleting it is best effort: credentials allowed to write
  but not to delete leave that one object, overwritten at each backup.

Each failure raises the check's own error (its exit code and hint kept) with a message
that says no backup was started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walg.errors import StorageError, WalgError
from walg.logs import get_logger

if TYPE_CHECKING:
    from walg.config.settings import CryptoSettings
    from walg.storage import Storage

__all__ = ["WRITE_CHECK_KEY", "check_before_backup"]

WRITE_CHECK_KEY = "walg_write_check"
_CONTENT = b"walg backup-push checks that it may write here before it starts a backup\n"
_log = get_logger("walg")


def check_before_backup(crypto: CryptoSettings, storage: Storage) -> None:
    """Raise the first failing check's error (see the module docstring); else return."""
    try:
        check_key(crypto)
        check_storage(storage)
    except WalgError as err:
        err.msg = f"{err.msg}; no backup was started"
        err.args = (err.msg,)
        raise


def check_key(crypto: CryptoSettings) -> None:
    """Load the configured encryption key and encrypt a few bytes with it."""
    if not crypto.enabled:
        return
    from walg.crypto import Crypter

    with Crypter(crypto) as crypter:
        encryptor = crypter.encryptor()
        try:
            encryptor.update(b"walg key check")
            encryptor.finish()
        except BaseException:
            encryptor.abort()
            raise
    _log.debug("backup-push: the encryption key encrypts")


def check_storage(storage: Storage) -> None:
    """Write a tiny object at the storage prefix and delete it again."""
    storage.put_object(WRITE_CHECK_KEY, _CONTENT)
    try:
        storage.delete_objects([WRITE_CHECK_KEY])
    except StorageError as err:  # allowed to write but not to delete: it stays
        _log.debug("backup-push: write check object not deleted", error=err.msg)
    _log.debug("backup-push: the storage takes objects", storage=storage.url)
