"""Helpers of bench/wal.py: the archivers under test as PostgreSQL runs them, and clusters.

Everything walg, pgBackRest and barman-cloud run here runs as the postgres user (through
``runuser``), as archive_command and restore_command do. walg runs with a *stock*
configuration: a wrapper script that exports only the storage, lz4 and the log level.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.postgres import PG_USER, PgCluster

WALG = str(Path(sys.executable).parent / "wal-g")
FILLER = (
    "INSERT INTO filler SELECT g, md5(g::text), md5((g * 7)::text) "
    "FROM generate_series(1, 200000) g"
)


# Extra environment for every walg run (PYTHONPATH of a snapshot with --at), set by main().
WALG_ENV: dict[str, str] = {}


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command]


def postgres_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def clean_env() -> dict[str, str]:
    """This process's environment without WALG_*, AWS_* and PG* (nothing leaks into a tool)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("WALG_", "AWS_", "PG"))}


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run ``command`` (cwd ``cwd``, environment ``env`` or :func:`clean_env`); raise with
    its stderr if it fails."""
    done = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr!r}")


def walg_wrapper(directory: Path, name: str, settings: dict[str, str]) -> str:
    """A script that runs wal-g with ``settings`` exported, plus lz4 and log level ERROR:
    what a DBA writes into archive_command/restore_command with a stock configuration."""
    values = {**WALG_ENV, "WALG_COMPRESSION_METHOD": "lz4", "WALG_LOG_LEVEL": "ERROR"}
    values.update(settings)
    exports = "".join(f"export {k}='{v}'\n" for k, v in values.items())
    script = directory / name
    script.write_text(f'#!/bin/sh\n{exports}exec {WALG} "$@"\n')
    script.chmod(0o755)
    return str(script)


def owned_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, *postgres_ids())
    path.chmod(0o755)
    return path


def pgbackrest(
    conf: Path,
    *,
    repo: Path,
    pgdata: Path,
    cluster: PgCluster | None = None,
    spool: Path | None = None,
) -> list[str]:
    """Write a pgBackRest configuration (stanza ``bench``, posix repository, lz4) and return
    the command prefix that runs it (as PostgreSQL runs it: wrap in :func:`as_postgres` to
    run it from here). With ``spool``: archive-async=y, spool-path, process-max=2
    (pgBackRest's asynchronous archive-push and archive-get)."""
    work = owned_dir(conf.parent / f"{conf.stem}-work")
    lines = [
        "[global]",
        f"repo1-path={owned_dir(repo)}",
        f"log-path={work}",
        f"lock-path={work}",
        "compress-type=lz4",
        "log-level-console=warn",
        "log-level-file=off",
    ]
    if spool is None:
        lines.append("archive-async=n")
    else:
        lines += ["archive-async=y", f"spool-path={owned_dir(spool)}", "process-max=2"]
    lines += ["[bench]", f"pg1-path={pgdata}"]
    if cluster is not None:
        lines += [f"pg1-socket-path={cluster.socket_dir}", f"pg1-port={cluster.port}"]
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o644)
    return ["pgbackrest", f"--config={conf}", "--stanza=bench"]


def stanza_create(command: list[str]) -> None:
    run(as_postgres([*command, "stanza-create"]))


def start_daemon(directory: Path, settings: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`wal-g daemon` as the postgres user (WALG_DAEMON_SOCKET opt-in), on a socket in
    ``directory``; returns the process and the socket's path."""
    socket_path = str(owned_dir(directory) / "walg.sock")
    values = {**WALG_ENV, "WALG_COMPRESSION_METHOD": "lz4", "WALG_LOG_LEVEL": "ERROR"}
    values.update(settings)
    words = [f"{k}={v}" for k, v in values.items()]
    daemon = subprocess.Popen(
        as_postgres(["env", *words, WALG, "daemon", socket_path]),
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path):
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise RuntimeError("wal-g daemon did not start")
        time.sleep(0.05)
    return daemon, socket_path


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


def has_daemon() -> bool:
    command = [WALG, "daemon", "--help"]
    return (
        subprocess.run(command, env={**clean_env(), **WALG_ENV}, capture_output=True).returncode
        == 0
    )


# --- walg's detached helpers ------------------------------------------------------------------


STOPPED_HELPERS = 0  # how many stop_walg_helpers found running, over the whole run


def _helper_dirs(pgdata: Path) -> list[str]:
    wal = os.path.realpath(pgdata / "pg_wal")
    return [os.path.join(wal, "walg_data"), os.path.join(wal, ".wal-g")]


def _serves(pid: int, roots: list[str]) -> bool:
    """Whether process ``pid`` (not a postgres server process) has its cwd or an open file
    under one of ``roots``: walg's prefetcher holds its lock file there, and so would a
    background archiver. Found by what it holds, never by its name."""
    proc = Path(f"/proc/{pid}")
    try:
        if os.path.basename(os.readlink(proc / "exe")) == "postgres":
            return False
        links = [os.readlink(proc / "cwd")]
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                links.append(os.readlink(fd))
    except OSError:
        return False
    return any(link == root or link.startswith(root + "/") for link in links for root in roots)


def _pid_files(roots: list[str]) -> set[int]:
    pids = set()
    for root in roots:
        for path in Path(root).rglob("*pid*") if os.path.isdir(root) else ():
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(path.read_text().split()[0]))
    return pids


def _holders(roots: list[str]) -> set[int]:
    me = os.getpid()
    candidates = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    return {p for p in candidates | _pid_files(roots) if p != me and _serves(p, roots)}


def wait_released(path: Path | None, timeout: float = 30.0) -> None:
    """Wait until no process holds a file under ``path`` (pgBackRest's async process and its
    spool), so that it does not run on into the next scenario. None: nothing to wait for."""
    if path is None:
        return
    roots = [os.path.realpath(path)]
    deadline = time.monotonic() + timeout
    while _holders(roots) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop_walg_helpers(pgdata: Path, timeout: float = 30.0) -> int:
    """Stop whatever walg left running in the background for this PGDATA (a prefetcher, a
    background archiver: processes holding files under pg_wal/walg_data or pg_wal/.wal-g,
    or named by a pid file there), so that nothing carries over into the next scenario.
    SIGTERM, then SIGKILL after ``timeout``. Returns how many were running."""
    global STOPPED_HELPERS
    roots = _helper_dirs(pgdata)
    pids = _holders(roots)
    STOPPED_HELPERS += len(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
    return len(pids)


# --- clusters -----------------------------------------------------------------------------------


def fake_pgdata(parent: Path, name: str) -> Path:
    """A fresh directory shaped like PGDATA (pg_wal/archive_status) for direct calls, as
    PostgreSQL makes them (cwd = PGDATA, %p = pg_wal/<name>)."""
    pgdata = owned_dir(parent / name)
    owned_dir(pgdata / "pg_wal")
    owned_dir(pgdata / "pg_wal" / "archive_status")
    return pgdata


def fill_until(cluster: PgCluster, segments: int) -> None:
    """Insert rows until ``segments`` more WAL segments than now have been completed."""
    start = cluster.psql("SELECT pg_current_wal_lsn()")
    cluster.psql("CREATE TABLE IF NOT EXISTS filler (id bigint, a text, b text)")
    while True:
        written = float(
            cluster.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start}') / 16777216")
        )
        if written >= segments:
            break
        cluster.psql(FILLER)


def ready(pgdata: Path) -> set[str]:
    """Names of the WAL files PostgreSQL marked ready for archiving."""
    status = pgdata / "pg_wal" / "archive_status"
    return {name[: -len(".ready")] for name in os.listdir(status) if name.endswith(".ready")}


def wait_archived(cluster: PgCluster, names: set[str], timeout: float = 600.0) -> None:
    """Wait until none of ``names`` is ready any more (PostgreSQL renamed .ready to .done
    after archive_command succeeded for it); polls the directory every 10 ms."""
    status = cluster.data_dir / "pg_wal" / "archive_status"
    deadline = time.monotonic() + timeout
    while any((status / f"{name}.ready").exists() for name in names):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not archived after {timeout:.0f} s:\n{cluster.log_tail()}")
        time.sleep(0.01)


def clone(data_dir: Path, **options: object) -> PgCluster:
    """A copy of a stopped cluster's data directory, adopted as a new cluster (new port)."""
    base = PgCluster.make_base()
    subprocess.run(["cp", "-a", str(data_dir), str(base / "data")], check=True)
    return PgCluster.adopt(base / "data", base=base, **options)  # type: ignore[arg-type]


def reload(cluster: PgCluster, archive_command: str) -> None:
    """Switch archive_command and make the server reload its configuration."""
    cluster.archive_command = archive_command
    cluster.configure()
    cluster.psql("SELECT pg_reload_conf()")


def wait_promoted(cluster: PgCluster, timeout: float = 600.0) -> None:
    """Poll (every 50 ms) until the server accepts connections and is out of recovery."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(RuntimeError):
            if cluster.psql("SELECT pg_is_in_recovery()") == "f":
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no promotion after {timeout:.0f} s:\n{cluster.log_tail()}")
        time.sleep(0.05)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
