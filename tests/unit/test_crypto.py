"""walg.crypto: OpenPGP streams through a real gpg, compatible with plain gpg and WAL-G."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walg.config.settings import CryptoSettings, Secret
from walg.crypto import Crypter, GpgStream, looks_encrypted, missing_key_error
from walg.crypto._verdict import judge_encrypt
from walg.errors import CryptoError

GPG = shutil.which("gpg")
pytestmark = pytest.mark.skipif(GPG is None, reason="gpg is not installed")

MIB = 1 << 20
PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class TestKey:
    """A throwaway key: its armored private and public forms and the keyring it lives in."""

    __test__ = False  # not a test class
    home: str
    fingerprint: str
    private: str
    public: str


def gpg(home: str, *args: str, data: bytes | None = None, check: bool = True) -> bytes:
    """Run plain gpg on ``home``; return its stdout."""
    assert GPG is not None
    done = subprocess.run(
        [GPG, "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback", *args],
        input=data,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(done.stderr.decode())
    return done.stdout


def stop_agent(home: str) -> None:
    """Stop the gpg-agent that gpg started for ``home``."""
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)


def make_key(name: str, passphrase: str = "", usage: str = "default") -> TestKey:
    """Generate an ed25519/cv25519 key in its own new home (the 'user keyring')."""
    home = tempfile.mkdtemp(prefix="walg-test-keyring-")
    pp = ["--passphrase", passphrase]
    gpg(home, *pp, "--quick-gen-key", name, "future-default", usage, "never")
    listing = gpg(home, "--with-colons", "--list-keys").decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
    private = gpg(home, *pp, "--armor", "--export-secret-keys", fpr).decode()
    public = gpg(home, "--armor", "--export", fpr).decode()
    return TestKey(home, fpr, private, public)


@pytest.fixture(scope="session")
def keys() -> Iterator[dict[str, TestKey]]:
    """Three keys made once per session: plain, passphrase-protected, and another one."""
    made = {
        "plain": make_key("walg test"),
        "protected": make_key("walg protected", PASSPHRASE),
        "other": make_key("walg other"),
    }
    yield made
    for key in made.values():
        stop_agent(key.home)
        shutil.rmtree(key.home, ignore_errors=True)


@pytest.fixture(scope="module")
def crypter(keys: dict[str, TestKey]) -> Iterator[Crypter]:
    """An open Crypter with the plain key given as WALG_PGP_KEY."""
    with Crypter(CryptoSettings(pgp_key=Secret(keys["plain"].private))) as opened:
        yield opened


@pytest.fixture
def scratch_home() -> Iterator[str]:
    """An empty GNUPGHOME for plain gpg, removed afterwards."""
    home = tempfile.mkdtemp(prefix="walg-test-scratch-")
    yield home
    stop_agent(home)
    shutil.rmtree(home, ignore_errors=True)


def keyring_state(home: str) -> dict[str, bytes]:
    """The key files of a GNUPGHOME (public keyring, private keys), by relative path."""
    root = Path(home)
    files = [root / "pubring.kbx", *sorted((root / "private-keys-v1.d").glob("*.key"))]
    return {str(f.relative_to(root)): f.read_bytes() for f in files if f.exists()}


def feed(stream: GpgStream, data: bytes, sizes: list[int]) -> bytes:
    """Feed ``data`` to ``stream`` in pieces of the given sizes (cycled), then finish."""
    out, pos, i = [], 0, 0
    with stream:
        while pos < len(data):
            size = sizes[i % len(sizes)]
            out.append(stream.update(memoryview(data)[pos : pos + size]))
            pos, i = pos + size, i + 1
        out.append(stream.finish())
    return b"".join(out)


def encrypt(crypter: Crypter, data: bytes) -> bytes:
    return b"".join(crypter.encrypt_stream(io.BytesIO(data)))


def decrypt(crypter: Crypter, data: bytes) -> bytes:
    return crypter.open_decrypted(io.BytesIO(data)).read()


def children() -> list[tuple[int, str]]:
    """(pid, state) of every gpg process whose parent is this one, zombies included (other
    children, such as test servers started by session fixtures, are not ours to count)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        command, _, rest = stat.partition("(")[2].rpartition(")")
        fields = rest.split()
        if fields and int(fields[1]) == os.getpid() and command.startswith("gpg"):
            found.append((int(name), fields[0]))
    return found


def live_processes_mentioning(text: str) -> list[int]:
    """Pids of running (not zombie) processes whose command line contains ``text``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            pids.append(int(name))
    return pids


def wait_until(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return bool(callable(condition) and condition())


def secret_fragments(key: TestKey) -> list[str]:
    """Pieces of the armored private key body that must never appear in any message."""
    body = [line for line in key.private.splitlines() if re.fullmatch(r"[A-Za-z0-9+/=]{40,}", line)]
    return [line[i : i + 16] for line in body for i in range(0, len(line) - 16, 16)]


def assert_clean(err: CryptoError, key: TestKey, passphrase: str | None = None) -> None:
    """The error's message and hint hold no key material and no passphrase, on one line."""
    text = f"{err.msg}\n{err.hint}"
    assert "\n" not in err.msg
    assert not [f for f in secret_fragments(key) if f in text]
    assert "PRIVATE KEY" not in text
    if passphrase:
        assert passphrase not in text


# --- round trips -----------------------------------------------------------------------


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=300_000),
    enc_sizes=st.lists(st.integers(1, 200_000), min_size=1, max_size=5),
    dec_sizes=st.lists(st.integers(1, 200_000), min_size=1, max_size=5),
)
def test_round_trip_in_any_chunking(
    crypter: Crypter, data: bytes, enc_sizes: list[int], dec_sizes: list[int]
) -> None:
    """Whatever the chunk sizes fed in, decrypting what was encrypted gives the input back."""
    encrypted = feed(crypter.encryptor(), data, enc_sizes)
    assert feed(crypter.decryptor(), encrypted, dec_sizes) == data


def test_empty_input_round_trips(crypter: Crypter) -> None:
    """An empty object encrypts to a valid message that decrypts to nothing."""
    encrypted = encrypt(crypter, b"")
    assert encrypted and looks_encrypted(encrypted)
    assert decrypt(crypter, encrypted) == b""
    assert b"".join(crypter.decrypt_stream(io.BytesIO(encrypted))) == b""


def test_50_mib_stream_with_bounded_memory(crypter: Crypter) -> None:
    """50 MiB go through encrypt then decrypt, chained chunk by chunk, without being held."""
    block = os.urandom(MIB)
    sent, received = hashlib.sha256(), hashlib.sha256()
    tracemalloc.start()
    try:
        with crypter.encryptor() as enc, crypter.decryptor() as dec:
            for i in range(50):
                chunk = block[i:] + block[:i]
                sent.update(chunk)
                received.update(dec.update(enc.update(chunk)))
            received.update(dec.update(enc.finish()))
            received.update(dec.finish())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received.digest() == sent.digest()
    assert peak < 12 * MIB, f"peak Python allocations {peak / MIB:.1f} MiB for 50 MiB"


def test_output_is_binary_uncompressed_openpgp(crypter: Crypter) -> None:
    """Ciphertext is binary OpenPGP (no armor) and barely larger than the data: no compression."""
    data = bytes(MIB)  # zeros: gpg's default zlib would shrink this to almost nothing
    encrypted = encrypt(crypter, data)
    assert looks_encrypted(encrypted[:16]) and not encrypted.startswith(b"-----")
    assert len(data) < len(encrypted) < len(data) + 4096


# --- compatibility with plain gpg ------------------------------------------------------


def test_plain_gpg_decrypts_what_we_encrypt(
    crypter: Crypter, keys: dict[str, TestKey], scratch_home: str
) -> None:
    """`gpg --decrypt` with the key imported in another home reads what walg wrote."""
    data = os.urandom(3 * MIB + 17)
    gpg(scratch_home, "--import", data=keys["plain"].private.encode())
    assert gpg(scratch_home, "--decrypt", data=encrypt(crypter, data)) == data


def test_we_decrypt_what_plain_gpg_encrypts(
    crypter: Crypter, keys: dict[str, TestKey], scratch_home: str
) -> None:
    """What `gpg --encrypt` made (default compression, binary or armored) decrypts with walg."""
    data = b"pg_wal segment " * 100_000
    gpg(scratch_home, "--import", data=keys["plain"].public.encode())
    fpr = keys["plain"].fingerprint
    for armor in ([], ["--armor"]):
        encrypted = gpg(
            scratch_home, "--trust-model", "always", *armor, "-r", fpr, "--encrypt", data=data
        )
        assert decrypt(crypter, encrypted) == data


# --- where the key comes from ----------------------------------------------------------


def test_key_from_path(keys: dict[str, TestKey], tmp_path: Path) -> None:
    """WALG_PGP_KEY_PATH: the armored key is read from the file."""
    path = tmp_path / "key.asc"
    path.write_text(keys["plain"].private)
    with Crypter(CryptoSettings(pgp_key_path=str(path))) as crypter:
        assert decrypt(crypter, encrypt(crypter, b"from a file")) == b"from a file"
        assert crypter.fingerprints == (keys["plain"].fingerprint,)


def test_key_with_literal_backslash_n(keys: dict[str, TestKey]) -> None:
    """As in WAL-G, a WALG_PGP_KEY written on one line with literal \\n sequences works."""
    one_line = keys["plain"].private.replace("\n", "\\n")
    with Crypter(CryptoSettings(pgp_key=Secret(one_line))) as crypter:
        assert decrypt(crypter, encrypt(crypter, b"one line")) == b"one line"


def test_public_key_encrypts_but_cannot_decrypt(keys: dict[str, TestKey], crypter: Crypter) -> None:
    """A public key is enough to encrypt; decrypting then says that the private part is needed."""
    with Crypter(CryptoSettings(pgp_key=Secret(keys["plain"].public))) as public:
        encrypted = encrypt(public, b"upload only")
        with pytest.raises(CryptoError, match="only the public part") as caught:
            decrypt(public, encrypted)
    assert decrypt(crypter, encrypted) == b"upload only"
    assert_clean(caught.value, keys["plain"])


def test_passphrase_right(keys: dict[str, TestKey]) -> None:
    """A protected key with the right WALG_PGP_KEY_PASSPHRASE decrypts."""
    cfg = CryptoSettings(
        pgp_key=Secret(keys["protected"].private), pgp_key_passphrase=Secret(PASSPHRASE)
    )
    with Crypter(cfg) as crypter:
        assert decrypt(crypter, encrypt(crypter, b"protected")) == b"protected"


@pytest.mark.parametrize("passphrase", ["wrong passphrase", None])
def test_passphrase_wrong_or_missing(keys: dict[str, TestKey], passphrase: str | None) -> None:
    """A wrong or missing passphrase fails with a message naming the setting, not the value."""
    key = keys["protected"]
    cfg = CryptoSettings(
        pgp_key=Secret(key.private),
        pgp_key_passphrase=None if passphrase is None else Secret(passphrase),
    )
    with Crypter(cfg) as crypter:
        encrypted = encrypt(crypter, b"protected")  # encryption needs no passphrase
        with pytest.raises(CryptoError, match="passphrase") as caught:
            decrypt(crypter, encrypted)
    assert "WALG_PGP_KEY_PASSPHRASE" in caught.value.msg + caught.value.hint
    assert_clean(caught.value, key, passphrase)
    assert_clean(caught.value, key, PASSPHRASE)


def test_gpg_key_id_uses_the_given_keyring(keys: dict[str, TestKey]) -> None:
    """WALG_GPG_KEY_ID: the key of the user's keyring encrypts and decrypts, keyring unchanged."""
    key = keys["plain"]
    before = keyring_state(key.home)
    cfg = CryptoSettings(gpg_key_id=Secret(key.fingerprint[-16:]))
    with Crypter(cfg, gnupghome=key.home) as crypter:
        assert crypter.gpg_home == key.home
        encrypted = encrypt(crypter, b"keyring")
        assert decrypt(crypter, encrypted) == b"keyring"
    assert keyring_state(key.home) == before
    assert gpg(key.home, "--decrypt", data=encrypted) == b"keyring"


def test_gpg_key_id_with_passphrase(keys: dict[str, TestKey]) -> None:
    """WALG_GPG_KEY_ID with a protected key uses WALG_PGP_KEY_PASSPHRASE through loopback."""
    key = keys["protected"]
    stop_agent(key.home)  # forget any passphrase the agent cached
    cfg = CryptoSettings(gpg_key_id=Secret(key.fingerprint), pgp_key_passphrase=Secret(PASSPHRASE))
    with Crypter(cfg, gnupghome=key.home) as crypter:
        assert decrypt(crypter, encrypt(crypter, b"keyring pp")) == b"keyring pp"


def test_gpg_key_id_protected_without_passphrase_fails_fast(keys: dict[str, TestKey]) -> None:
    """Without WALG_PGP_KEY_PASSPHRASE, a protected keyring key fails at once, never prompts."""
    key = keys["protected"]
    stop_agent(key.home)  # forget any passphrase the agent cached
    cfg = CryptoSettings(gpg_key_id=Secret(key.fingerprint))
    with Crypter(cfg, gnupghome=key.home, idle_timeout=20) as crypter:
        encrypted = encrypt(crypter, b"keyring")
        with pytest.raises(CryptoError, match="none is configured"):
            decrypt(crypter, encrypted)


def test_passphrase_is_not_on_the_command_line(keys: dict[str, TestKey]) -> None:
    """gpg gets the passphrase through a file descriptor; its command line does not show it."""
    cfg = CryptoSettings(
        pgp_key=Secret(keys["protected"].private), pgp_key_passphrase=Secret(PASSPHRASE)
    )
    with Crypter(cfg) as crypter, crypter.decryptor() as dec:
        proc_cmdline = Path(f"/proc/{dec.pid}/cmdline")
        # Right after the fork, before gpg's exec completes, the file can still be empty.
        assert wait_until(lambda: b"--decrypt" in proc_cmdline.read_bytes())
        cmdline = proc_cmdline.read_bytes().decode()
    assert "--passphrase-fd" in cmdline and PASSPHRASE not in cmdline
    assert keys["protected"].private[100:140] not in cmdline


def test_gpg_key_id_unknown(keys: dict[str, TestKey]) -> None:
    """A WALG_GPG_KEY_ID that the keyring does not hold fails at open, naming the setting."""
    cfg = CryptoSettings(gpg_key_id=Secret("0123456789ABCDEF"))
    with pytest.raises(CryptoError, match="WALG_GPG_KEY_ID names no key") as caught:
        Crypter(cfg, gnupghome=keys["plain"].home).open()
    assert "0123456789ABCDEF" not in caught.value.msg  # the setting is a Secret


def test_pgp_key_never_touches_the_user_keyring(keys: dict[str, TestKey]) -> None:
    """WALG_PGP_KEY goes to a private 0700 home, removed on close; gnupghome is left alone."""
    user_home = keys["other"].home
    before = keyring_state(user_home)
    cfg = CryptoSettings(pgp_key=Secret(keys["plain"].private))
    with Crypter(cfg, gnupghome=user_home) as crypter:
        home = crypter.gpg_home
        assert home is not None and home != user_home
        assert os.stat(home).st_mode & 0o777 == 0o700
        encrypt(crypter, b"x")
    assert not os.path.exists(home)
    assert keyring_state(user_home) == before
    assert wait_until(lambda: not live_processes_mentioning(home))


# --- failures ----------------------------------------------------------------------------


def test_wrong_key_names_both_keys(keys: dict[str, TestKey], crypter: Crypter) -> None:
    """An object for another key fails with both key IDs and no key material."""
    with Crypter(CryptoSettings(pgp_key=Secret(keys["other"].private))) as other:
        encrypted = encrypt(other, b"not for you")
    with pytest.raises(CryptoError) as caught:
        decrypt(crypter, encrypted)
    message = caught.value.msg
    assert re.search(r"encrypted for key [0-9A-F]{16}; the configured key is [0-9A-F]{16}", message)
    assert_clean(caught.value, keys["plain"])
    assert_clean(caught.value, keys["other"])


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("where", ["session key", "middle", "last byte"])
def test_corrupted_ciphertext_fails(crypter: Crypter, keys: dict[str, TestKey], where: str) -> None:
    """One flipped bit anywhere makes decryption fail with CryptoError."""
    encrypted = encrypt(crypter, os.urandom(2 * MIB))
    at = {"session key": 20, "middle": len(encrypted) // 2, "last byte": len(encrypted) - 1}
    name = "basebackups_005/base_000000010000000000000002/tar_partitions/part_001.tar.lz4"
    with pytest.raises(CryptoError, match="corrupt") as caught:
        crypter.open_decrypted(io.BytesIO(flip(encrypted, at[where])), name=name).read()
    assert caught.value.msg.startswith(f"decryption of {name} failed: ")
    assert_clean(caught.value, keys["plain"])


@pytest.mark.parametrize("keep", [1, 10, 50, 500, 1_000_000, -1])
def test_truncated_ciphertext_fails(crypter: Crypter, keep: int) -> None:
    """A ciphertext cut anywhere, even inside its first packet, fails with CryptoError."""
    encrypted = encrypt(crypter, os.urandom(2 * MIB))
    # One byte cannot be told from other data: that message says "...or it is corrupt".
    expected = "not OpenPGP" if keep == 1 else "truncated|corrupt"
    with pytest.raises(CryptoError, match=expected):
        decrypt(crypter, encrypted[:keep])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x04\x22\x4d\x18" + bytes(100), "not OpenPGP-encrypted"),  # an LZ4 frame
        (b"plain text " * 50, "not OpenPGP-encrypted"),
    ],
)
def test_not_encrypted_objects_fail_clearly(crypter: Crypter, data: bytes, reason: str) -> None:
    """Empty or unencrypted input is refused with a message saying what it is."""
    with pytest.raises(CryptoError, match=reason):
        decrypt(crypter, data)


def test_signed_but_not_encrypted_is_refused(crypter: Crypter, scratch_home: str) -> None:
    """An OpenPGP message that is not encrypted (gpg --store) is not passed through."""
    stored = gpg(scratch_home, "--store", data=b"clear")
    with pytest.raises(CryptoError, match="not encrypted"):
        decrypt(crypter, stored)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (CryptoSettings(pgp_key=Secret("-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx")), "no OpenPGP"),
        (CryptoSettings(pgp_key_path="/nonexistent/key.asc"), "cannot read the PGP key file"),
        (CryptoSettings(), "no PGP key is configured"),
    ],
)
def test_bad_key_settings_fail_at_open(
    cfg: CryptoSettings, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed key, a missing key file or no key at all fail at open(), leaving nothing."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(CryptoError, match=message) as caught:
        Crypter(cfg).open()
    assert "\n" not in caught.value.msg and caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_key_without_encryption_subkey_fails_at_open() -> None:
    """A sign-only key is refused at open(), before anything is stored."""
    sign_only = make_key("walg sign only", usage="sign")
    try:
        with pytest.raises(CryptoError, match="no encryption subkey") as caught:
            Crypter(CryptoSettings(pgp_key=Secret(sign_only.private))).open()
        assert_clean(caught.value, sign_only)
    finally:
        stop_agent(sign_only.home)
        shutil.rmtree(sign_only.home, ignore_errors=True)


def test_gpg_missing(keys: dict[str, TestKey]) -> None:
    """Without a gpg binary, open() says to install GnuPG."""
    cfg = CryptoSettings(pgp_key=Secret(keys["plain"].private))
    with pytest.raises(CryptoError, match="gpg is not installed") as caught:
        Crypter(cfg, gpgbinary="walg-no-such-gpg").open()
    assert "gnupg" in caught.value.hint.lower()


def test_missing_key_error_and_detection(crypter: Crypter) -> None:
    """Encrypted objects are recognized from their first bytes; others are not."""
    encrypted = encrypt(crypter, b"x" * 1000)
    assert looks_encrypted(encrypted[:16])
    assert looks_encrypted(b"-----BEGIN PGP MESSAGE-----\n\nhQ")
    for other in (b"", b"\x04\x22\x4d\x18\x64\x40\xa7", b"\x5d\x00\x00\x80\x00", bytes(16)):
        assert not looks_encrypted(other)
    err = missing_key_error("wal_005/000000010000000000000001.lz4")
    assert "no PGP key is configured" in err.msg and "WALG_PGP_KEY" in err.hint


# --- processes are cleaned up ------------------------------------------------------------


def test_no_gpg_left_after_a_normal_run(crypter: Crypter) -> None:
    """After complete encrypt and decrypt runs, no child process remains, not even a zombie."""
    decrypt(crypter, encrypt(crypter, os.urandom(MIB)))
    assert children() == []


def test_no_gpg_left_when_the_consumer_stops_early(crypter: Crypter) -> None:
    """Closing a stream mid-way kills its gpg: generator closed, reader closed, with-block left."""
    chunks = crypter.encrypt_stream(io.BytesIO(os.urandom(8 * MIB)), chunk_size=MIB)
    next(chunks)
    chunks.close()
    reader = crypter.open_decrypted(io.BytesIO(encrypt(crypter, os.urandom(4 * MIB))))
    reader.read(1000)
    reader.close()
    with crypter.decryptor() as dec:
        dec.update(encrypt(crypter, b"abc")[:40])
    assert children() == []


def test_no_gpg_left_after_an_exception(crypter: Crypter) -> None:
    """An exception in the consumer's code aborts gpg; the original exception propagates."""
    with pytest.raises(ZeroDivisionError), crypter.encryptor() as enc:
        enc.update(os.urandom(MIB))
        _ = 1 / 0
    assert children() == []


def test_close_stops_streams_and_agent(keys: dict[str, TestKey]) -> None:
    """Crypter.close() kills gpg processes still running and the temporary home's agent."""
    crypter = Crypter(CryptoSettings(pgp_key=Secret(keys["plain"].private))).open()
    home = crypter.gpg_home
    assert home is not None
    dec = crypter.decryptor()
    dec.update(encrypt(crypter, os.urandom(MIB))[: MIB // 2])
    assert wait_until(lambda: live_processes_mentioning(home))  # the agent runs
    crypter.close()
    assert children() == []
    assert not os.path.exists(home)
    assert wait_until(lambda: not live_processes_mentioning(home))
    with pytest.raises(RuntimeError):
        dec.update(b"more")


def test_gpg_killed_mid_stream_fails_promptly(crypter: Crypter) -> None:
    """If gpg dies while being fed, the next update or finish raises CryptoError, no hang."""
    enc = crypter.encryptor()
    enc.update(os.urandom(MIB))
    os.kill(enc.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(CryptoError):
        for _ in range(64):
            enc.update(os.urandom(MIB))
        enc.finish()
    assert time.monotonic() - start < 10
    assert children() == []


def test_stalled_gpg_times_out() -> None:
    """A gpg that stops reading and writing is killed after idle_timeout, with CryptoError."""
    stalled = [sys.executable, "-c", "import time; time.sleep(60)"]
    stream = GpgStream(stalled, judge=judge_encrypt, idle_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(CryptoError, match="no progress"):
        stream.update(bytes(8 * MIB))  # more than the pipe holds
    assert time.monotonic() - start < 5
    assert children() == []


def test_stale_home_of_a_dead_process_is_swept(keys: dict[str, TestKey]) -> None:
    """A home left by a walg killed before close() is removed, agent stopped, at the next open."""
    script = (
        "import os, sys\n"
        "from walg.config.settings import CryptoSettings, Secret\n"
        "from walg.crypto import Crypter\n"
        "c = Crypter(CryptoSettings(pgp_key=Secret(sys.stdin.read()))).open()\n"
        "print(c.gpg_home, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=keys["plain"].private,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    stale = done.stdout.strip().splitlines()[-1]
    assert os.path.isdir(stale)
    with Crypter(CryptoSettings(pgp_key=Secret(keys["plain"].private))):
        assert not os.path.exists(stale)
    assert wait_until(lambda: not live_processes_mentioning(stale))


@pytest.mark.parametrize(
    ("owner", "age", "stale"),
    [
        ("100 555", 0.0, False),  # its process, alive
        ("100 556", 0.0, True),  # pid reused by another process
        ("200 555", 0.0, True),  # process gone
        ("100", 0.0, False),  # pid only: alive while the pid is
        ("200", 0.0, True),
        (None, 0.0, False),  # no owner file yet: being made right now
        ("", 0.0, False),  # (an owner file written by an older walg, not yet filled in)
        ("garbage", 0.0, False),
        (None, 3600.0, True),  # never finished: stale after the grace
        ("", 3600.0, True),
    ],
)
def test_is_stale_home(owner: str | None, age: float, stale: bool) -> None:
    """A home is stale when its owner is gone or replaced; one without a readable owner is
    being made by another process, unless it has been so for longer than the grace."""
    from walg.crypto._keys import is_stale_home

    alive = {100: "100 555"}
    assert is_stale_home(owner, age, alive.get) is stale


def plant_home(owner: str | None, age: float = 0.0) -> str:
    """A temporary home as walg names them, with ``owner`` in its owner file (None: none)."""
    home = tempfile.mkdtemp(prefix="walg-gpg-")
    if owner is not None:
        Path(home, "walg-owner").write_text(owner)
    if age:
        then = time.time() - age
        os.utime(home, (then, then))
    return home


def test_sweep_leaves_homes_being_made() -> None:
    """The sweep leaves homes another process is making (owner file absent or still empty)
    and removes one that stayed unowned past the grace; it never raises."""
    from walg.crypto._keys import _sweep_stale_homes

    making = [plant_home(None), plant_home("")]
    abandoned = plant_home(None, age=3600)
    try:
        _sweep_stale_homes(GPG or "gpg")
        assert all(os.path.isdir(home) for home in making)
        assert not os.path.exists(abandoned)
    finally:
        for home in [*making, abandoned]:
            shutil.rmtree(home, ignore_errors=True)


_OPEN_ROUND_TRIP_CLOSE = (
    "import io, sys\n"
    "from walg.config.settings import CryptoSettings\n"
    "from walg.crypto import Crypter\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "with Crypter(CryptoSettings(pgp_key_path=sys.argv[1])) as c:\n"
    "    data = b''.join(c.encrypt_stream(io.BytesIO(b'x' * 1000)))\n"
    "    assert c.open_decrypted(io.BytesIO(data)).read() == b'x' * 1000\n"
    "    print(c.gpg_home, flush=True)\n"
)
_SWEEP_UNTIL_STOPPED = (
    "import os, sys\n"
    "from walg.crypto._keys import _sweep_stale_homes\n"
    "sweeps = 0\n"
    "while not os.path.exists(sys.argv[1]) or sweeps < 3:\n"
    "    _sweep_stale_homes('gpg')\n"
    "    sweeps += 1\n"
    "print(sweeps)\n"
)


def test_many_processes_make_homes_at_once(keys: dict[str, TestKey], tmp_path: Path) -> None:
    """24 processes open a key at the same moment (each sweeping, then making its home)
    while another process sweeps without pause and stale homes are being removed: every
    one of them succeeds, and the stale homes are gone."""
    key_file = tmp_path / "key.asc"
    key_file.write_text(keys["plain"].private)
    stop = tmp_path / "stop"
    stale = [plant_home(f"{os.getpid()} not-its-start-time") for _ in range(8)]
    sweeper = subprocess.Popen(
        [sys.executable, "-c", _SWEEP_UNTIL_STOPPED, str(stop)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    users = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_ROUND_TRIP_CLOSE, str(key_file)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(24)
    ]
    try:
        for user in users:  # every process is up and waiting: then all go at once
            assert user.stdout is not None and user.stdout.readline() == "ready\n"
        for user in users:
            assert user.stdin is not None
            user.stdin.write("go\n")
            user.stdin.flush()
        results = [user.communicate(timeout=300) for user in users]
    finally:
        stop.touch()
        _, sweeper_err = sweeper.communicate(timeout=120)
        stale_left = [home for home in stale if os.path.exists(home)]
        for home in stale:
            shutil.rmtree(home, ignore_errors=True)
    failed = [err for user, (_, err) in zip(users, results, strict=True) if user.returncode]
    assert failed == []
    assert sweeper.returncode == 0, sweeper_err
    assert stale_left == []
    homes = [out.strip() for out, _ in results]
    assert all(home.startswith(tempfile.gettempdir()) for home in homes)
    assert not any(os.path.exists(home) for home in homes)  # each closed its own


# --- process boundaries ------------------------------------------------------------------


def test_pickle_before_open_only(keys: dict[str, TestKey]) -> None:
    """An unopened Crypter pickles (to reach a worker); an open one refuses."""
    crypter = Crypter(CryptoSettings(pgp_key=Secret(keys["plain"].private)))
    copy = pickle.loads(pickle.dumps(crypter))
    assert not copy.is_open and copy.settings == crypter.settings
    with crypter:
        with pytest.raises(TypeError):
            pickle.dumps(crypter)
        with copy:
            assert decrypt(copy, encrypt(crypter, b"worker")) == b"worker"


def test_forked_child_close_leaves_the_parent_working(crypter: Crypter) -> None:
    """A forked child that closes its copy removes nothing the parent still uses."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        crypter.close()
        os._exit(0)
    os.waitpid(pid, 0)
    assert decrypt(crypter, encrypt(crypter, b"still here")) == b"still here"


def test_fork_during_a_stream_does_not_hold_gpg_input_open(crypter: Crypter) -> None:
    """A child forked while a stream runs closes its copy of the pipes: finish() still ends."""
    with crypter.encryptor() as enc:
        enc.update(b"before the fork")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            time.sleep(5)
            os._exit(0)
        try:
            start = time.monotonic()
            assert enc.finish()
            assert time.monotonic() - start < 3
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
