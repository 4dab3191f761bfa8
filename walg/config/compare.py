"""Which settings change where or how WAL is stored or read, and how two configurations differ
in them.

``wal-g daemon`` serves wal-push and wal-fetch with the settings it was started with. A
request whose own configuration would store or read the data otherwise (another storage or
endpoint, compression, encryption key, overwrite rule, S3 storage class or server-side
encryption) must be refused, not served with the daemon's: :func:`differences` names them.

Compared, for wal-push and wal-fetch: the storage identity
(:meth:`Settings.storage_identity`: prefix, endpoint, emulator) and the encryption settings
(OpenPGP key, key file, its passphrase, gpg key ID; libsodium key, key file, transform: a
key decides what is written and what can be read). For wal-push only: the compression
method, WALG_PREVENT_WAL_OVERWRITE and, on S3, the storage class and server-side encryption.
Not compared, as they change neither: credentials (they rotate; the endpoint and bucket say
where), retries, concurrency, rate limits, logging, backup settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from walg.config.settings import Settings

__all__ = ["differences"]

_Value = Callable[[Settings], object]

_READ_AND_WRITE: Final[tuple[tuple[str, _Value], ...]] = (
    ("WALG_PGP_KEY", lambda s: s.crypto.pgp_key),
    ("WALG_PGP_KEY_PATH", lambda s: s.crypto.pgp_key_path),
    ("WALG_PGP_KEY_PASSPHRASE", lambda s: s.crypto.pgp_key_passphrase),
    ("WALG_GPG_KEY_ID", lambda s: s.crypto.gpg_key_id),
    ("WALG_LIBSODIUM_KEY", lambda s: s.crypto.libsodium_key),
    ("WALG_LIBSODIUM_KEY_PATH", lambda s: s.crypto.libsodium_key_path),
    ("WALG_LIBSODIUM_KEY_TRANSFORM", lambda s: s.crypto.libsodium_key_transform),
)
_WRITE: Final[tuple[tuple[str, _Value], ...]] = (
    ("WALG_COMPRESSION_METHOD", lambda s: s.compression.method),
    ("WALG_PREVENT_WAL_OVERWRITE", lambda s: s.wal.prevent_overwrite),
)
_WRITE_S3: Final[tuple[tuple[str, _Value], ...]] = (
    ("WALG_S3_STORAGE_CLASS", lambda s: s.s3.storage_class),
    ("WALG_S3_SSE", lambda s: s.s3.sse),
    ("WALG_S3_SSE_KMS_ID", lambda s: s.s3.sse_kms_id),
)


def differences(ours: Settings, theirs: Settings, writes: bool) -> list[str]:
    """The settings in which ``theirs`` would store (``writes``) or read WAL otherwise than
    ``ours``: ``"storage"`` when the storage identities differ (then nothing else is
    compared), else the names of the variables whose values differ (never the values:
    some are secrets). Raises ConfigError when either has no single storage."""
    if ours.storage_identity() != theirs.storage_identity():
        return ["storage"]
    compared = _READ_AND_WRITE
    if writes:
        compared += _WRITE
        if ours.require_storage().kind == "s3":
            compared += _WRITE_S3
    return [name for name, value in compared if value(ours) != value(theirs)]
