"""libsodium encryption end to end on real PostgreSQL: backup-push and wal-push (as
archive_command) with WALG_LIBSODIUM_KEY, then backup-fetch and a recovery that replays the
archived WAL through wal-fetch; a wrong key; a backup whose sentinel does not record
encryption (as WAL-G writes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest_helpers import archive_now, fetch_and_recover, push  # type: ignore[import-not-found]
from nacl import bindings as nb
from servers.postgres import PgCluster
from test_pitr import archiving, file_env, wrapper  # type: ignore[import-not-found]

HEX = "2e4af6d03c7f73f4a80b0594dee2b4bcd11300bafb8a68b2dda610fc88817fb2"
ACCOUNTS = "SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts"
LZ4_MAGIC = b"\x04\x22\x4d\x18"


def opened(sealed: bytes, key: bytes) -> bytes:
    """The plaintext of a stream in WAL-G's libsodium format (independent of walg's code):
    24-byte header, chunks of 8192 + 17 bytes, the last one short and FINAL."""
    state = nb.crypto_secretstream_xchacha20poly1305_state()
    nb.crypto_secretstream_xchacha20poly1305_init_pull(state, sealed[:24], key)
    body, out, tag = sealed[24:], [], 0
    for at in range(0, len(body) + 1, 8209):
        if at == len(body) and tag == nb.crypto_secretstream_xchacha20poly1305_TAG_FINAL:
            break
        plain, tag = nb.crypto_secretstream_xchacha20poly1305_pull(state, body[at:at + 8209])
        out.append(plain)
    assert tag == nb.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    return b"".join(out)


def test_libsodium_backup_and_wal_round_trip(pg_cluster_factory: Any, walg: Any) -> None:
    """Everything stored is libsodium-encrypted in WAL-G's format; backup-fetch (the key
    from a file) and WAL replay (wal-fetch as restore_command) give back the exact data."""

    def env_for(cluster: PgCluster) -> dict[str, str]:
        return {**file_env(cluster), "WALG_LIBSODIUM_KEY": HEX,
                "WALG_LIBSODIUM_KEY_TRANSFORM": "hex"}

    source, env = archiving(pg_cluster_factory, env_for)
    source.pgbench_init(scale=1)
    name = push(walg, source, env)
    source.pgbench_run(seconds=2, clients=2).wait()
    source.psql("CREATE TABLE later AS SELECT generate_series(1, 5000) AS v")
    expected = source.psql(ACCOUNTS), source.psql("SELECT sum(v) FROM later")
    archive_now(source)

    storage = Path(env["WALG_FILE_PREFIX"])
    key = bytes.fromhex(HEX)
    part = next(storage.glob(f"basebackups_005/{name}/tar_partitions/part_001.tar.lz4"))
    assert opened(part.read_bytes(), key)[:4] == LZ4_MAGIC
    segment = next(p for p in sorted(storage.glob("wal_005/*.lz4")) if len(p.stem) == 24)
    assert opened(segment.read_bytes(), key)[:4] == LZ4_MAGIC
    sentinel_path = storage / f"basebackups_005/{name}_backup_stop_sentinel.json"
    assert json.loads(sentinel_path.read_text())["WalgEncrypted"] is True

    # a wrong key: one clear line, non-zero, nothing that looks like a restore
    wrong_target = PgCluster.make_base() / "data"
    wrong = walg("backup-fetch", str(wrong_target), name, check=False,
                 env={**source.env, **env, "WALG_LIBSODIUM_KEY": "f" * 64})
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("ERROR")]
    assert wrong.returncode != 0 and len(errors) == 1, wrong.stderr
    assert "wrong libsodium key?" in errors[0] and "f" * 64 not in wrong.stderr
    assert not (wrong_target / "global" / "pg_control").exists()
    assert not wrong_target.exists() or not any(wrong_target.iterdir())

    # the right key, from a file: restore and replay the archived WAL through wal-fetch
    key_file = source.make_dir("keys") / "libsodium.key"
    key_file.write_text(HEX + "\n")
    from_file = {**file_env(source), "WALG_FILE_PREFIX": env["WALG_FILE_PREFIX"],
                 "WALG_LIBSODIUM_KEY_PATH": str(key_file), "WALG_LIBSODIUM_KEY_TRANSFORM": "hex"}
    restored = fetch_and_recover(pg_cluster_factory, walg, {**source.env, **from_file}, name,
                                 wrapper(source, env))
    assert (restored.psql(ACCOUNTS), restored.psql("SELECT sum(v) FROM later")) == expected

    # a sentinel without WalgEncrypted (WAL-G's): the configured key still decrypts it
    sentinel = json.loads(sentinel_path.read_text())
    del sentinel["WalgEncrypted"]
    sentinel_path.write_text(json.dumps(sentinel))
    target = PgCluster.make_base() / "data"
    walg("backup-fetch", str(target), name, env={**source.env, **env})
    assert (target / "global" / "pg_control").exists()
