"""Where the key lives: a private temporary GNUPGHOME, or the user's own keyring.

WALG_PGP_KEY / WALG_PGP_KEY_PATH are imported (with python-gnupg) into a fresh directory
(mode 0700) so the user's keyring is never touched; ``close`` stops the gpg-agent that gpg
started for it and removes the directory. WALG_GPG_KEY_ID (deprecated) uses the keyring of
the user running walg, or the ``gnupghome`` given, and leaves it as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from walg.config.settings import CryptoSettings
from walg.errors import CryptoError

__all__ = ["KeyInfo", "Keyring", "open_keyring", "resolve_gpg"]

_TEMP_PREFIX: Final = "walg-gpg-"
_OWNER_FILE: Final = "walg-owner"  # "<pid> <start time>" of the process that made the home
_UNOWNED_GRACE: Final = 600.0
"""Seconds a home without a readable owner file is taken to be still in the making."""


class _QuietGnupg(logging.Filter):
    """Drops python-gnupg's records below ERROR.

    Its DEBUG records include the first 256 characters of the key data being imported (key
    material), and its WARNINGs are raw text that would bypass walg's log format; walg
    reports gpg failures itself, as CryptoError.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _quiet_gnupg_logger() -> None:
    logger = logging.getLogger("gnupg")
    if not any(isinstance(f, _QuietGnupg) for f in logger.filters):
        logger.addFilter(_QuietGnupg())


def resolve_gpg(gpgbinary: str) -> str:
    """The absolute path of the gpg program; CryptoError if it is not installed."""
    found = shutil.which(gpgbinary)
    if found is None:
        raise CryptoError(
            f"gpg is not installed (no {gpgbinary!r} on PATH)",
            hint="install GnuPG (Debian: apt-get install gnupg)",
        )
    return found


@dataclass(frozen=True)
class KeyInfo:
    """What gpg listed about the configured key(s). No key material, only identifiers."""

    fingerprints: tuple[str, ...] = ()  # primary keys: the recipients of encryption
    key_ids: frozenset[str] = frozenset()  # long IDs of primary keys and subkeys
    encryption_ids: tuple[str, ...] = ()  # long IDs of the (sub)keys made for encryption
    has_secret: bool = False


def parse_colons(lines: Iterable[str]) -> KeyInfo:
    """KeyInfo from gpg's ``--with-colons`` listing (pub/sec, sub/ssb and fpr records)."""
    fingerprints: list[str] = []
    key_ids: set[str] = set()
    encryption: list[str] = []
    secret = False
    expect_primary_fpr = False
    for line in lines:
        fields = line.split(":")
        kind = fields[0]
        if kind in ("pub", "sec", "sub", "ssb") and len(fields) > 11:
            key_ids.add(fields[4])
            secret = secret or kind in ("sec", "ssb")
            if "e" in fields[11]:  # even if expired: such a key still decrypts
                encryption.append(fields[4])
            expect_primary_fpr = kind in ("pub", "sec")
        elif kind == "fpr" and expect_primary_fpr and len(fields) > 9:
            fingerprints.append(fields[9])
            expect_primary_fpr = False
    return KeyInfo(
        tuple(dict.fromkeys(fingerprints)),
        frozenset(key_ids),
        tuple(dict.fromkeys(encryption)),
        secret,
    )


@dataclass
class Keyring:
    """A GNUPGHOME ready for gpg, and what it holds for walg."""

    gpgbinary: str
    home: str | None  # None: gpg's default (GNUPGHOME or ~/.gnupg)
    temporary: bool
    source: str  # the setting the key came from, for messages
    info: KeyInfo = field(default_factory=KeyInfo)
    owner_pid: int = field(default_factory=os.getpid)

    def options(self) -> list[str]:
        """gpg options every invocation on this keyring starts with."""
        home = [] if self.home is None else ["--homedir", self.home]
        # Not --quiet: it also silences status lines (NO_SECKEY) that the verdicts use.
        return [*home, "--batch", "--no-tty", "--status-fd", "2"]

    def close(self) -> None:
        """Stop the agent of a temporary home and remove it (only in the process that made it)."""
        if not self.temporary or self.home is None or os.getpid() != self.owner_pid:
            return
        home, self.home = self.home, None
        _stop_agent(self.gpgbinary, home)
        shutil.rmtree(home, ignore_errors=True)
        if os.path.exists(home):  # the agent wrote a last file while exiting
            shutil.rmtree(home, ignore_errors=True)


def _stop_agent(gpgbinary: str, home: str) -> None:
    """Ask the gpg-agent serving ``home`` (if one was started) to exit."""
    run_dir = f"/run/user/{os.getuid()}/gnupg"
    socket_elsewhere = os.path.isdir(run_dir)
    if not (socket_elsewhere or os.path.exists(os.path.join(home, "S.gpg-agent"))):
        return
    gpgconf = os.path.join(os.path.dirname(gpgbinary), "gpgconf")
    if not os.path.exists(gpgconf):
        gpgconf = shutil.which("gpgconf") or "gpgconf"
    commands = [["--kill", "gpg-agent"]]
    if socket_elsewhere:
        commands.append(["--remove-socketdir"])
    for command in commands:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [gpgconf, "--homedir", home, *command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )


def _gnupg(gpgbinary: str, home: str | None) -> Any:
    """A python-gnupg handle (imported here: it is not needed unless crypto is used)."""
    import gnupg  # no type information: setup.cfg tells mypy to ignore it

    _quiet_gnupg_logger()
    return gnupg.GPG(gpgbinary=gpgbinary, gnupghome=home)


def _key_text(settings: CryptoSettings) -> tuple[str | bytes, str]:
    """The key and the name of the setting it came from (WAL-G's priority)."""
    if settings.pgp_key is not None:
        # As WAL-G: a literal backslash-n in the variable stands for a newline.
        return settings.pgp_key.reveal().replace("\\n", "\n"), "WALG_PGP_KEY"
    path = settings.pgp_key_path
    assert path is not None
    try:
        with open(path, "rb") as f:
            return f.read(), "WALG_PGP_KEY_PATH"
    except OSError as exc:
        raise CryptoError(
            f"cannot read the PGP key file {path}: {exc.strerror}",
            hint="check WALG_PGP_KEY_PATH and the file's permissions",
        ) from None


def _import(keyring: Keyring, text: str | bytes) -> KeyInfo:
    gpg = _gnupg(keyring.gpgbinary, keyring.home)
    result = gpg.import_keys(text, extra_args=["--import-options", "import-show"])
    listing = (result.data or b"").decode("utf-8", "replace").splitlines()
    info = parse_colons(listing)
    name = keyring.source
    if not result.fingerprints or not info.fingerprints:
        raise CryptoError(
            f"{name} holds no OpenPGP key that gpg can read",
            hint=f"{name} must hold an ASCII-armored key, as written by "
            "gpg --armor --export-secret-keys KEY (or --export for encryption only)",
        )
    if int(result.sec_read or 0) > int(result.sec_imported or 0):
        raise CryptoError(
            f"gpg could not import the private key from {name}",
            hint="check that gpg-agent is installed and can start for this user",
        )
    if not info.encryption_ids:
        raise CryptoError(
            f"the key in {name} has no encryption subkey",
            hint="use a key with an encryption subkey (gpg --quick-add-key FPR default encr)",
        )
    return info


def _process_identity(pid: int) -> str | None:
    """``"<pid> <start time>"``, which stays unique when pids are reused; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        return f"{pid} {fields[19]}"
    except (OSError, IndexError):
        return None


def is_stale_home(owner: str | None, age: float, identity: Callable[[int], str | None]) -> bool:
    """Whether a temporary home whose owner file reads ``owner`` (None: absent or
    unreadable), last changed ``age`` seconds ago, belongs to no live process.

    A home without a well-formed owner is one being made (by another process, right now)
    unless it has been so for _UNOWNED_GRACE; an owner of only a pid (no start time known)
    counts as live while that pid is."""
    fields = (owner or "").split()
    if not fields or not fields[0].isdigit() or len(fields) > 2:
        return age > _UNOWNED_GRACE
    current = identity(int(fields[0]))
    if current is None:
        return True
    return len(fields) == 2 and current != " ".join(fields)


def _read_owner(home: str) -> str | None:
    try:
        with open(os.path.join(home, _OWNER_FILE), encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:  # absent (being made, or being removed), or unreadable
        return None


def _sweep_stale_homes(gpgbinary: str) -> None:
    """Remove temporary homes left by walg processes that died without ``close``
    (SIGKILL, os._exit): their gpg-agent would otherwise idle forever next to a key.

    Other walg processes create and remove homes at the same time: a home may be in the
    making (no owner file yet) or vanish at any step, and two sweeps may remove the same
    stale home; none of that is an error."""
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_TEMP_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid != os.getuid() or not entry.is_dir(follow_symlinks=False):
            continue
        age = time.time() - info.st_mtime
        if is_stale_home(_read_owner(entry.path), age, _process_identity):
            _stop_agent(gpgbinary, entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)


def _make_home() -> str:
    """A new temporary home (mode 0700) whose owner file appears whole or not at all."""
    home = tempfile.mkdtemp(prefix=_TEMP_PREFIX)
    partial = os.path.join(home, f".{_OWNER_FILE}.new")
    try:
        with open(partial, "w", encoding="ascii") as f:
            f.write(_process_identity(os.getpid()) or str(os.getpid()))
        os.rename(partial, os.path.join(home, _OWNER_FILE))
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return home


def _import_into_temporary_home(settings: CryptoSettings, gpgbinary: str) -> Keyring:
    text, source = _key_text(settings)
    _sweep_stale_homes(gpgbinary)
    home = _make_home()
    keyring = Keyring(gpgbinary, home, temporary=True, source=source)
    try:
        keyring.info = _import(keyring, text)
    except BaseException:
        keyring.close()
        raise
    return keyring


def _user_keyring(key_id: str, gpgbinary: str, gnupghome: str | None) -> Keyring:
    keyring = Keyring(gpgbinary, gnupghome, temporary=False, source="WALG_GPG_KEY_ID")
    if gnupghome is not None and not os.path.isdir(gnupghome):
        raise CryptoError(
            f"the gpg home directory {gnupghome} does not exist", hint="check GNUPGHOME"
        )
    result = _gnupg(gpgbinary, gnupghome).list_keys(keys=[key_id])
    keyring.info = parse_colons((result.data or b"").decode("utf-8", "replace").splitlines())
    if not keyring.info.fingerprints:
        raise CryptoError(
            "WALG_GPG_KEY_ID names no key in the gpg keyring of this user",
            hint="list the keys with `gpg --list-keys` as the user running wal-g "
            "(or set WALG_PGP_KEY_PATH instead: WALG_GPG_KEY_ID is deprecated)",
        )
    return keyring


def open_keyring(
    settings: CryptoSettings, *, gnupghome: str | None = None, gpgbinary: str = "gpg"
) -> Keyring:
    """Make the configured key usable by gpg (see the module docstring)."""
    if not settings.enabled:
        raise CryptoError(
            "no PGP key is configured",
            hint="set WALG_PGP_KEY, WALG_PGP_KEY_PATH or WALG_GPG_KEY_ID",
        )
    binary = resolve_gpg(gpgbinary)
    if settings.pgp_key is not None or settings.pgp_key_path is not None:
        return _import_into_temporary_home(settings, binary)
    assert settings.gpg_key_id is not None
    return _user_keyring(settings.gpg_key_id.reveal(), binary, gnupghome)
