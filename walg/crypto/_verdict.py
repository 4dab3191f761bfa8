"""Turn what gpg reported (exit status and ``--status-fd`` lines) into one clear CryptoError.

Messages name key IDs (public identifiers) and settings, never key material or passphrases;
gpg itself never prints either. Status keywords are documented in GnuPG's doc/DETAILS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from walg.crypto._detect import looks_encrypted
from walg.crypto._keys import KeyInfo
from walg.crypto._process import GpgOutcome
from walg.errors import CryptoError

__all__ = ["DecryptContext", "judge_decrypt", "judge_encrypt"]

# libgpg-error codes (the low 16 bits of the number in an ``ERROR`` status line).
_BAD_PASSPHRASE: Final = 11
_NO_PASSPHRASE_CODES: Final = frozenset({85, 99, 177})  # no pinentry, canceled, no passphrase
_CORRUPT_HINT: Final = "the object may be corrupt or incomplete; try another backup"
_KEY_HINT: Final = "configure the private key the object was encrypted with"
_INV_RECP_REASONS: Final = {
    "1": "not found",
    "2": "ambiguous",
    "3": "wrong key usage",
    "4": "revoked",
    "5": "expired",
    "9": "not a secret key",
    "10": "not trusted",
    "13": "disabled",
}


@dataclass(frozen=True)
class DecryptContext:
    """What the verdict needs to know about the configured key."""

    source: str  # WALG_PGP_KEY, WALG_PGP_KEY_PATH or WALG_GPG_KEY_ID
    info: KeyInfo
    passphrase_given: bool
    name: str = ""  # the object being decrypted, named in messages when given


def _last_message(outcome: GpgOutcome) -> str:
    for message in reversed(outcome.messages):
        text = message.removeprefix("gpg: ").strip()
        if text:
            return text
    return "no message"


def judge_encrypt(outcome: GpgOutcome) -> None:
    """Return if gpg encrypted everything; raise CryptoError otherwise."""
    if outcome.returncode == 0 and outcome.has("END_ENCRYPTION") and not outcome.input_refused:
        return
    for args in outcome.args("INV_RECP"):
        code, _, key = args.partition(" ")
        reason = _INV_RECP_REASONS.get(code, "unusable")
        raise CryptoError(
            f"encryption failed: the configured key {key} cannot encrypt ({reason})",
            hint="renew the key's expiry or configure another key (gpg --list-keys shows it)",
        )
    raise CryptoError(
        f"encryption failed: gpg exited with status {outcome.returncode}: {_last_message(outcome)}",
        hint=None,
    )


def judge_decrypt(outcome: GpgOutcome, ctx: DecryptContext) -> None:
    """Return if gpg decrypted and authenticated everything; raise CryptoError otherwise."""
    if (
        outcome.returncode == 0
        and outcome.has("DECRYPTION_OKAY")
        and not outcome.has("BADMDC")
        and not outcome.has("DECRYPTION_FAILED")
        and not outcome.input_refused
    ):
        return
    error = (
        _passphrase_error(outcome, ctx)
        or _wrong_key_error(outcome, ctx)
        or _format_error(outcome)
        or CryptoError(
            f"decryption failed: gpg exited with status {outcome.returncode}: "
            f"{_last_message(outcome)}",
            hint=_CORRUPT_HINT,
        )
    )
    if ctx.name:
        detail = error.msg.removeprefix("decryption failed: ")
        raise CryptoError(f"decryption of {ctx.name} failed: {detail}", hint=error.hint)
    raise error


def _error_codes(outcome: GpgOutcome, location: str) -> list[int]:
    codes = []
    for args in outcome.args("ERROR"):
        where, _, code = args.partition(" ")
        if where == location and code.split(" ")[0].isdigit():
            codes.append(int(code.split(" ")[0]) & 0xFFFF)
    return codes


def _passphrase_error(outcome: GpgOutcome, ctx: DecryptContext) -> CryptoError | None:
    codes = _error_codes(outcome, "pkdecrypt_failed")
    if _BAD_PASSPHRASE in codes:
        if ctx.passphrase_given:
            return CryptoError(
                "decryption failed: WALG_PGP_KEY_PASSPHRASE is not the passphrase of the key",
                hint="check WALG_PGP_KEY_PASSPHRASE",
            )
        return CryptoError(
            "decryption failed: gpg-agent refused the passphrase of the key",
            hint="set WALG_PGP_KEY_PASSPHRASE",
        )
    if not ctx.passphrase_given and _NO_PASSPHRASE_CODES.intersection(codes):
        return CryptoError(
            "decryption failed: the private key is protected by a passphrase "
            "and none is configured",
            hint="set WALG_PGP_KEY_PASSPHRASE",
        )
    if codes:
        return CryptoError(
            "decryption failed: the object's session key does not decrypt (the object is corrupt)",
            hint=_CORRUPT_HINT,
        )
    return None


def _wrong_key_error(outcome: GpgOutcome, ctx: DecryptContext) -> CryptoError | None:
    recipients = [args.split(" ")[0] for args in outcome.args("ENC_TO")]
    if not recipients or outcome.has("DECRYPTION_KEY") or not outcome.has("DECRYPTION_FAILED"):
        return None  # no session key packet, or one of them was for our key
    named = ", ".join(r for r in recipients if r.strip("0")) or "a hidden recipient"
    if ctx.info.key_ids.intersection(recipients):
        return CryptoError(
            f"decryption failed: {ctx.source} holds only the public part of key {named}",
            hint="decryption needs the private key (gpg --armor --export-secret-keys KEY)",
        )
    if ctx.source == "WALG_GPG_KEY_ID":
        return CryptoError(
            f"decryption failed: the object was encrypted for key {named}; "
            "the gpg keyring has no private key for it",
            hint=_KEY_HINT,
        )
    configured = ", ".join(ctx.info.encryption_ids) or "without an encryption subkey"
    return CryptoError(
        f"decryption failed: the object was encrypted for key {named}; "
        f"the configured key is {configured}",
        hint=_KEY_HINT,
    )


def _format_error(outcome: GpgOutcome) -> CryptoError | None:
    if outcome.has("NEED_PASSPHRASE_SYM"):
        return CryptoError(
            "decryption failed: the object is encrypted with a passphrase, not with a key",
            hint="walg reads objects encrypted for an OpenPGP key (WALG_PGP_KEY)",
        )
    if outcome.has("BADMDC") or outcome.has("BEGIN_DECRYPTION"):
        return CryptoError(
            "decryption failed: the object is corrupt or truncated (integrity check failed)",
            hint=_CORRUPT_HINT,
        )
    if outcome.bytes_in == 0:
        return CryptoError("decryption failed: the object is empty", hint=_CORRUPT_HINT)
    if outcome.has("ENC_TO") or looks_encrypted(outcome.head):
        return CryptoError(
            "decryption failed: the object is truncated or corrupt", hint=_CORRUPT_HINT
        )
    if outcome.has("PLAINTEXT"):
        return CryptoError(
            "decryption failed: the object is OpenPGP data but not encrypted",
            hint="it was not written by walg or WAL-G with encryption",
        )
    return CryptoError(
        "decryption failed: the object is not OpenPGP-encrypted data",
        hint="if it was stored without encryption, read it without the PGP settings; "
        "otherwise it is corrupt",
    )
