"""backup-push checks the encryption key and the storage before it starts a backup in
PostgreSQL (issue 18 item 5), on a real cluster.

The observable: the server logs every statement (log_statement = all), and walg starts a
backup with pg_backup_start (PostgreSQL 15+) or pg_start_backup (older). After each bad
configuration, backup-push has failed fast with one ERROR line saying no backup was
started, and the log holds no such call; then a good backup-push succeeds and the log
holds one (so the observable does see a backup start), and the write check object is gone.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

from servers.gpg import throwaway_key
from servers.postgres import PgCluster

from walg.backup.prechecks import WRITE_CHECK_KEY

BACKUP_START = re.compile(r"pg_(backup_start|start_backup)\s*\(")
BAD_ARMOR = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bad_configurations(store: Path, tmp_path: Path) -> dict[str, dict[str, str]]:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("not a folder\n")
    s3 = {
        "WALG_S3_PREFIX": "s3://walg-precheck/cluster",
        "AWS_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    file = {"WALG_FILE_PREFIX": str(store)}
    return {
        "PGP key that is no key": {**file, "WALG_PGP_KEY": BAD_ARMOR},
        "PGP key file missing": {**file, "WALG_PGP_KEY_PATH": str(tmp_path / "no-such.asc")},
        "libsodium key too short": {**file, "WALG_LIBSODIUM_KEY": "short"},
        "libsodium hex key of the wrong length": {
            **file, "WALG_LIBSODIUM_KEY": "abcd", "WALG_LIBSODIUM_KEY_TRANSFORM": "hex",
        },
        "S3 on a closed port": s3,
        "file storage that is a file": {"WALG_FILE_PREFIX": str(not_a_folder)},
    }  # fmt: skip


def backup_starts(cluster: PgCluster) -> int:
    return len(BACKUP_START.findall(cluster.log_file.read_text(errors="replace")))


def test_bad_key_or_storage_fails_before_the_backup_starts(
    pg_cluster_factory: Any, walg: Any, tmp_path: Path
) -> None:
    """Each bad key or storage: exit non-zero within 20 s, 'no backup was started', and no
    pg_backup_start in the server's statement log; then a good backup-push starts one."""
    cluster: PgCluster = pg_cluster_factory(settings={"log_statement": "'all'"})
    store = cluster.make_dir("storage")
    cluster.psql("SELECT 1")  # the statement log is on
    for what, env in bad_configurations(store, tmp_path).items():
        started = time.monotonic()
        done = walg("backup-push", str(cluster.data_dir), env={**cluster.env, **env}, check=False)
        seconds = time.monotonic() - started
        print(f"{what}: exit {done.returncode} in {seconds:.1f} s")
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        assert done.returncode != 0, f"{what}:\n{done.stderr}"
        assert len(errors) == 1 and "no backup was started" in errors[0], f"{what}:\n{done.stderr}"
        assert "Traceback" not in done.stderr
        assert seconds < 20, f"{what} took {seconds:.1f} s"
        assert backup_starts(cluster) == 0, f"{what}: a backup was started\n{done.stderr}"
    assert cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                        "'client backend' AND pid <> pg_backend_pid()") == "0"  # fmt: skip
    with throwaway_key("walg precheck <precheck@example.com>") as key:
        good = {**cluster.env, "WALG_FILE_PREFIX": str(store), "WALG_PGP_KEY": key}
        name = walg("backup-push", str(cluster.data_dir), env=good).stdout.strip()
    assert name.startswith("base_")
    assert backup_starts(cluster) == 1  # the observable sees a backup that does start
    assert not (store / WRITE_CHECK_KEY).exists()
    assert (store / "basebackups_005" / f"{name}_backup_stop_sentinel.json").is_file()
