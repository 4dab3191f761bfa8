"""Throughput of walg's gpg streams, one process: encrypt and decrypt with gpg's compression
off (what walg does: the data is already compressed) and at gpg's default (zlib); then
walg's libsodium streams (WALG_LIBSODIUM_KEY: secretstream in this very process, as in one
encrypt/decrypt stage worker), and libsodium alone (PyNaCl, 8 KiB chunks, no buffering).

The data is random, like compressed backup parts. A throwaway ed25519/cv25519 key is
generated in a temporary GNUPGHOME; the input is fed in 1 MiB chunks from memory and the
output is counted, not kept. Also prints open()+close() time (what every wal-push pays).

    .venv/bin/python bench/crypto.py [--mib 256] [--key-type future-default|rsa3072] [--no-gpg]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

from walg.config.settings import CryptoSettings, Secret
from walg.crypto import Crypter, GpgStream
from walg.crypto._sodium import SodiumDecryptor, SodiumEncryptor
from walg.crypto._verdict import judge_encrypt

MIB = 1 << 20


def make_key(gpg: str, key_type: str) -> str:
    """An armored private key without passphrase, made in a throwaway home."""
    home = tempfile.mkdtemp(prefix="walg-bench-key-")
    try:
        base = [
            gpg,
            "--homedir",
            home,
            "--batch",
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
        ]
        usage = "default" if key_type == "future-default" else "cert"
        subprocess.run(
            [*base, "--quick-gen-key", "walg bench", key_type, usage, "never"],
            check=True,
            capture_output=True,
        )
        if key_type != "future-default":
            fpr = subprocess.run(
                [gpg, "--homedir", home, "--with-colons", "--list-keys"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            primary = next(
                line.split(":")[9] for line in fpr.splitlines() if line.startswith("fpr")
            )
            subprocess.run(
                [*base, "--quick-add-key", primary, key_type, "encr", "never"],
                check=True,
                capture_output=True,
            )
        return subprocess.run(
            [*base, "--armor", "--export-secret-keys"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def run(
    stream: GpgStream | SodiumEncryptor | SodiumDecryptor, data: memoryview
) -> tuple[float, bytes]:
    """Feed ``data`` in 1 MiB chunks; return (seconds, output)."""
    out: list[bytes] = []
    start = time.perf_counter()
    with stream:
        for pos in range(0, len(data), MIB):
            out.append(stream.update(data[pos : pos + MIB]))
        out.append(stream.finish())
    return time.perf_counter() - start, b"".join(out)


def gpg_alone(argv: list[str], data: bytes) -> float:
    """Seconds for plain gpg reading a file and writing /dev/null (no Python in the path)."""
    with tempfile.NamedTemporaryFile() as src, open(os.devnull, "wb") as sink:
        src.write(data)
        src.flush()
        src.seek(0)
        start = time.perf_counter()
        subprocess.run(argv, stdin=src, stdout=sink, stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start


def rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:8.1f} MB/s"


def libsodium(data: memoryview) -> None:
    """walg's libsodium streams (through Crypter, as a stage worker uses them), best of 3,
    and the bare secretstream calls per 8 KiB chunk for comparison."""
    from nacl import bindings as nb

    settings = CryptoSettings(libsodium_key=Secret(os.urandom(16).hex()))
    with Crypter(settings) as crypter:
        enc_times, dec_times = [], []
        for _ in range(3):
            seconds, encrypted = run(crypter.encryptor(), data)
            dec_seconds, decrypted = run(crypter.decryptor("bench"), memoryview(encrypted))
            assert decrypted == data
            enc_times.append(seconds)
            dec_times.append(dec_seconds)
    enc, dec = rate(len(data), min(enc_times)), rate(len(data), min(dec_times))
    size = len(encrypted) / len(data)
    print(f"libsodium (walg)        encrypt {enc}   decrypt {dec}   ciphertext {size:.4f}x")
    raw = bytes(data)
    key = os.urandom(32)
    state = nb.crypto_secretstream_xchacha20poly1305_state()
    start = time.perf_counter()
    nb.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    for pos in range(0, len(raw), 8192):
        nb.crypto_secretstream_xchacha20poly1305_push(state, raw[pos : pos + 8192])
    alone = time.perf_counter() - start
    print(f"  PyNaCl push alone, 8 KiB slices  encrypt {rate(len(raw), alone)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--key-type", default="future-default")
    parser.add_argument("--no-gpg", action="store_true", help="libsodium only")
    args = parser.parse_args()
    if args.no_gpg:
        data = memoryview(os.urandom(args.mib * MIB))
        print(f"data: {args.mib} MiB random, 1 MiB chunks; load average "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        libsodium(data)
        return
    gpg = shutil.which("gpg") or "gpg"
    settings = CryptoSettings(pgp_key=Secret(make_key(gpg, args.key_type)))
    data = memoryview(os.urandom(args.mib * MIB))
    version = subprocess.run([gpg, "--version"], capture_output=True, text=True).stdout
    print(f"gpg: {version.splitlines()[0]}")
    print(f"data: {args.mib} MiB random (like compressed parts), 1 MiB chunks, key {args.key_type}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    times = []
    for _ in range(10):
        start = time.perf_counter()
        Crypter(settings).open().close()
        times.append(time.perf_counter() - start)
    print(f"open+close (key import, agent stop): median {sorted(times)[5] * 1000:.0f} ms")

    with Crypter(settings) as crypter:
        home = crypter.gpg_home
        assert home is not None
        base = [gpg, "--homedir", home, "--batch", "--no-tty", "--trust-model", "always"]
        recipients = [a for f in crypter.fingerprints for a in ("--recipient", f)]
        default_argv = [*base, "--status-fd", "2", "--encrypt", *recipients]
        variants: list[tuple[str, Callable[[], GpgStream]]] = [
            ("compression off (walg)", crypter.encryptor),
            ("gpg default (zlib)    ", lambda: GpgStream(default_argv, judge=judge_encrypt)),
        ]
        for name, start_encryptor in variants:
            seconds, encrypted = run(start_encryptor(), data)
            dec_seconds, decrypted = run(crypter.decryptor(), memoryview(encrypted))
            assert decrypted == data
            enc, dec = rate(len(data), seconds), rate(len(data), dec_seconds)
            size = len(encrypted) / len(data)
            print(f"{name}  encrypt {enc}   decrypt {dec}   ciphertext {size:.4f}x")
            if name.startswith("compression off"):
                enc_argv = [*base, "--compress-algo", "none", "--encrypt", *recipients]
                dec_argv = [gpg, "--homedir", home, "--batch", "--decrypt"]
                alone_enc = gpg_alone(enc_argv, bytes(data))
                alone_dec = gpg_alone(dec_argv, encrypted)
                print(
                    f"  gpg alone, file -> /dev/null  encrypt {rate(len(data), alone_enc)}"
                    f"   decrypt {rate(len(data), alone_dec)}"
                )
    libsodium(data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB (input, ciphertext and plaintext in memory)")


if __name__ == "__main__":
    main()
