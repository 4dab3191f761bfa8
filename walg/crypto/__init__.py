"""OpenPGP encryption and decryption of streams, compatible with WAL-G (see ``crypter``).

``with Crypter(settings.crypto) as crypter`` imports the key (``open``/``close``);
``with crypter.encryptor() as enc`` starts one gpg; feed it with ``enc.update(chunk)``
(returns output as it comes) and end with ``enc.finish()`` (the rest, or CryptoError).
"""

from __future__ import annotations

from walg.crypto._detect import looks_encrypted, missing_key_error
from walg.crypto._process import GpgStream
from walg.crypto.crypter import Crypter, StreamTransform

__all__ = [
    "Crypter",
    "GpgStream",
    "StreamTransform",
    "looks_encrypted",
    "missing_key_error",
]
