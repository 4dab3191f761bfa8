"""Recognize an OpenPGP-encrypted object from its first bytes, without any key.

Used to turn "the decompressor choked" into "this object is encrypted and no key is
configured". An encrypted message starts with a public-key (tag 1) or symmetric-key (tag 3)
session key packet; LZ4 frames (0x04...) and .lzma files (0x5D...) never do. Brotli streams
have no magic, so for them this is a heuristic: check it after decompression failed.
"""

from __future__ import annotations

from typing import Final

from walg.errors import CryptoError

__all__ = ["looks_encrypted", "missing_key_error"]

_ARMOR: Final = b"-----BEGIN PGP MESSAGE-----"
_VERSIONS: Final = {1: (3, 6), 3: (4, 5, 6)}  # packet tag -> session key packet versions


def _header(head: bytes) -> tuple[int, int] | None:
    """(tag, offset of the packet body) of the first OpenPGP packet header, if it is one."""
    if len(head) < 2 or not head[0] & 0x80:
        return None
    if head[0] & 0x40:  # new format: tag in 6 bits, then a 1, 2 or 5 byte length
        tag, first = head[0] & 0x3F, head[1]
        size = 1 if first < 192 else 2 if first < 224 else 5 if first == 255 else 0
        return (tag, 1 + size) if size else None
    tag, kind = (head[0] >> 2) & 0x0F, head[0] & 0x03
    return (tag, 1 + (1, 2, 4, 0)[kind]) if kind != 3 else None


def looks_encrypted(head: bytes) -> bool:
    """True if ``head`` (the first bytes of an object, 16 are enough) starts an encrypted
    OpenPGP message: binary, as walg and WAL-G write it, or ASCII-armored."""
    if head.lstrip().startswith(_ARMOR):
        return True
    found = _header(head)
    if found is None or found[0] not in _VERSIONS or found[1] >= len(head):
        return False
    tag, body = found
    return head[body] in _VERSIONS[tag]


def missing_key_error(name: str) -> CryptoError:
    """The error for an encrypted object read without any PGP key configured."""
    return CryptoError(
        f"{name} is encrypted (OpenPGP) but no PGP key is configured",
        hint="set WALG_PGP_KEY or WALG_PGP_KEY_PATH (and WALG_PGP_KEY_PASSPHRASE) "
        "to the key the backups were made with",
    )
