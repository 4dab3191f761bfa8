"""backup-verify --replay on PostgreSQL: the backup is restored into a private directory and a
throwaway server recovers it to consistency with wal-g as its restore_command.

walg runs as the postgres OS user (PostgreSQL refuses root): the replay is called in-process
(walg.backup.replay.replay_backup) through a small ``python -c`` run with ``setpriv``, which
execs it directly, so its PID is the one to signal. Storage and TMPDIR are directories the
postgres user owns."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest_helpers import WALG, archive_now, scrubbed_env  # type: ignore[import-not-found]
from servers.logtext import untimed
from servers.postgres import PG_USER, PgCluster

from walg.postgres.wal import wal_file_name

REPLAY = """
import sys
from walg import config
from walg.backup.replay import replay_backup
from walg.errors import WalgError
sys.argv[0] = sys.argv[2] or sys.argv[0]
try:
    print(replay_backup(config.load(__import__("os").environ), sys.argv[1]))
except WalgError as err:
    print(f"ERROR: {err.msg}", file=sys.stderr)
    print(f"HINT: {err.hint}", file=sys.stderr)
    sys.exit(err.exit_code)
"""


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid", PG_USER, "--regid", PG_USER, "--init-groups", *command]


def _env(cluster: PgCluster, env: Mapping[str, str]) -> dict[str, str]:
    home = pwd.getpwnam(PG_USER).pw_dir if os.geteuid() == 0 else os.environ.get("HOME", "/")
    return {**scrubbed_env(), "HOME": home, "WALG_ARCHIVE_CHECK": "false", **cluster.env, **env}


def replay(name: str, env: Mapping[str, str], argv0: str = "", *, root: bool = False,
           wait: bool = True) -> Any:
    """The replay of ``name`` as postgres (as root with ``root``): a completed run, or
    with ``wait=False`` the running process."""
    command = [sys.executable, "-c", REPLAY, name, argv0]
    command = command if root else _as_postgres(command)
    if not wait:
        return subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=600)


def archiving_cluster(factory: Any) -> tuple[PgCluster, dict[str, str]]:
    """A cluster archiving with `wal-g wal-push`, its storage and TMPDIR owned by postgres."""
    cluster: PgCluster = factory()
    storage, tmp = cluster.make_dir("storage"), cluster.make_dir("tmp")
    env = {"WALG_FILE_PREFIX": str(storage), "TMPDIR": str(tmp)}
    script = cluster.make_dir("bin") / "walg.sh"
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    script.write_text(f"#!/bin/sh\n{exports}exec {WALG} \"$@\"\n")
    script.chmod(0o755)
    cluster.archive_command = f"{script} wal-push %p"
    cluster.configure()
    cluster.restart()
    return cluster, _env(cluster, env)


def backup(cluster: PgCluster, env: Mapping[str, str]) -> str:
    """A backup-push as postgres, with its WAL archived; the backup's name."""
    cluster.pgbench_init(scale=1)
    done = subprocess.run(_as_postgres([WALG, "backup-push", str(cluster.data_dir)]),
                          env={**env, "WALG_ARCHIVE_CHECK": "true"}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    archive_now(cluster)
    return done.stdout.strip().splitlines()[-1]


def leftovers(env: Mapping[str, str]) -> list[str]:
    """Replay directories under TMPDIR and processes whose command line names one."""
    found = [str(p) for p in Path(env["TMPDIR"]).iterdir()]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "walg-replay-" in cmdline:
            found.append(f"pid {proc.name}: {cmdline}")
    return found


def test_replay_of_a_good_backup(pg_cluster_factory: Any) -> None:
    """A backup whose WAL is archived by wal-push replays to consistency: exit 0, a summary
    naming the LSN, and no directory or process left."""
    cluster, env = archiving_cluster(pg_cluster_factory)
    name = backup(cluster, env)
    done = replay("LATEST", env)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"backup {name} replayed to consistency at LSN "), summary
    assert leftovers(env) == []


def test_replay_without_the_stop_segment_fails(pg_cluster_factory: Any) -> None:
    """With the backup's stop segment gone from wal_005, the replay fails (exit 65) and shows
    the server log; nothing is left behind."""
    cluster, env = archiving_cluster(pg_cluster_factory)
    name = backup(cluster, env)
    storage = Path(env["WALG_FILE_PREFIX"])
    sentinel = json.loads((storage / "basebackups_005" / f"{name}_backup_stop_sentinel.json")
                          .read_text())
    stop = wal_file_name(1, int(sentinel["FinishLSN"]) - 1)
    removed = [p for p in (storage / "wal_005").iterdir() if p.name.startswith(stop)]
    assert removed
    for path in removed:
        path.unlink()
    done = replay(name, env)
    assert done.returncode == 65, done.stderr
    assert f"ERROR: backup {name} did not reach a consistent state" in done.stderr
    assert "the server log ends with:" in done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("ERROR: "))
    assert f"not in the archive: {stop}" in error  # the first line of the error's message
    assert leftovers(env) == []


def test_replay_as_root_is_refused(pg_cluster_factory: Any) -> None:
    """Run as root, the replay refuses at once (exit 2), naming the fix, before anything is
    downloaded or created."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    cluster, env = archiving_cluster(pg_cluster_factory)
    backup(cluster, env)
    done = replay("LATEST", env, root=True)
    assert done.returncode == 2
    assert "PostgreSQL refuses to run as root" in done.stderr
    assert "sudo -u postgres wal-g backup-verify --replay" in done.stderr
    assert leftovers(env) == []


def test_replay_stopped_by_sigterm_leaves_nothing(pg_cluster_factory: Any) -> None:
    """SIGTERM while the throwaway server waits in restore_command: exit 143, the server and
    its restore_command stopped, the directory removed."""
    cluster, env = archiving_cluster(pg_cluster_factory)
    name = backup(cluster, env)
    slow = cluster.make_dir("slow") / "wal-g"  # the replay runs "this same wal-g": this one
    slow.write_text(f"#!/bin/sh\nsleep 60\nexec {WALG} \"$@\"\n")
    slow.chmod(0o755)
    process = replay(name, env, str(slow), wait=False)
    try:
        deadline = time.monotonic() + 120
        while not any("sleep 60" in p or "wal-fetch" in p for p in leftovers(env)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the server never ran restore_command"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    assert leftovers(env) == []


def _cli_has_backup_verify() -> bool:
    done = subprocess.run([WALG, "backup-verify", "--help"], capture_output=True, text=True,
                          env=scrubbed_env(), timeout=60, check=False)
    return done.returncode == 0 and "--replay" in done.stdout


def test_cli_backup_verify_replay(pg_cluster_factory: Any) -> None:
    """`wal-g backup-verify --replay LATEST` as postgres: exit 0 and the replay's summary;
    with the stop segment gone, the replay's error; nothing left either way."""
    if not _cli_has_backup_verify():
        pytest.skip("wal-g backup-verify is not registered in this build")
    cluster, env = archiving_cluster(pg_cluster_factory)
    name = backup(cluster, env)
    command = _as_postgres([WALG, "backup-verify", "--replay", "LATEST"])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"replay: backup {name} replayed to consistency at LSN " in done.stdout
    assert leftovers(env) == []
    storage = Path(env["WALG_FILE_PREFIX"])
    for path in (storage / "wal_005").iterdir():
        if path.name.startswith(name[len("base_"):]):
            path.unlink()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 65, done.stderr
    assert f"ERROR: backup {name} did not reach a consistent state" in untimed(done.stderr)
    assert leftovers(env) == []
