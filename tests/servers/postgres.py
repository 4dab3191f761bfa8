"""Throwaway PostgreSQL clusters for tests: :class:`PgCluster` and pytest fixtures.

PostgreSQL refuses to run as root, so when the tests run as root the server programs
(initdb, pg_ctl, postgres) run as the ``postgres`` OS user through ``runuser``; clients (psql,
pgbench, walg) run as the test process. Everything lives under one base directory made with
``tempfile.mkdtemp`` in /tmp and opened to 0755, so the postgres user can traverse it::

    <base>/data      PGDATA, owned by postgres, mode 0700
    <base>/run       unix socket directory (PGHOST), owned by postgres
    <base>/log       server log (postgres.log)
    <base>/<name>    directories made with PgCluster.make_dir (archive, tablespaces, ...)

The server listens only on the unix socket (or also on 127.0.0.1 with ``listen_tcp``).
Settings go into ``<data>/walg_test.conf``, included from postgresql.conf; settings in
postgresql.auto.conf (ALTER SYSTEM, or recovery settings written by a restore) win over it.

Fixtures (import them into a test module or conftest)::

    from servers.postgres import pg_cluster, pg_cluster_factory  # noqa: F401

``pg_cluster_factory(**options)`` makes started clusters and cleans them all up;
``pg_cluster`` is one started default cluster. A second cluster from a restored data
directory: restore into a directory the postgres user can reach (not pytest's 0700
``tmp_path``), e.g. ``base = PgCluster.make_base(); restore into base / "data"``, then
``PgCluster.adopt(base / "data", base=base, restore_command=...)``: cleanup() removes base.
Costs on a 2-core machine: initdb ≈ 1 s, start ≈ 0.2 s, stop ≈ 0.2 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ClusterFactory",
    "PgBench",
    "PgCluster",
    "find_pg_bin",
    "pg_cluster",
    "pg_cluster_factory",
    "postgres_unavailable",
]

PG_USER = "postgres"
_TIMEOUT = 120.0
_CONF = "walg_test.conf"


def find_pg_bin() -> Path | None:
    """$WALG_TEST_PG_BIN, else the bin directory of the newest /usr/lib/postgresql/N."""
    given = os.environ.get("WALG_TEST_PG_BIN")
    if given:
        return Path(given)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None if they can."""
    bin_dir = find_pg_bin()
    if bin_dir is None or not (bin_dir / "postgres").exists():
        return "PostgreSQL server binaries not found (set WALG_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} OS user to run the server"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _owner() -> tuple[int, int] | None:
    """(uid, gid) the server files must belong to, or None if we are not root."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path) -> None:
    owner = _owner()
    if owner is None:
        return
    os.chown(path, *owner, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(Path(root) / name, *owner, follow_symlinks=False)


class PgBench:
    """A pgbench run in the background; :meth:`stop` ends it early, :meth:`wait` awaits it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def stop(self) -> str:
        """Interrupt pgbench (SIGINT) if it still runs, and return what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self, timeout: float = _TIMEOUT) -> str:
        """Wait for pgbench to finish and return its output; kill it after ``timeout``."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out


class PgCluster:
    """One PostgreSQL cluster in its own base directory. Not started by the constructor."""

    def __init__(
        self,
        base: Path,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        archive_command: str | None = "/bin/true",
        restore_command: str | None = None,
        fsync: bool = False,
        listen_tcp: bool = False,
        settings: Mapping[str, str] | None = None,
        server_env: Mapping[str, str] | None = None,
    ) -> None:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError(postgres_unavailable() or "no PostgreSQL binaries")
        self.bin = bin_dir
        self.base = base
        self.data_dir = data_dir or base / "data"
        self.socket_dir = base / "run"
        self.log_file = base / "log" / "postgres.log"
        self.port = port or free_port()
        self.archive_command = archive_command
        self.restore_command = restore_command
        self.fsync = fsync
        self.listen_tcp = listen_tcp
        self.settings = dict(settings or {})
        self.server_env = dict(server_env or {})
        self.running = False
        self._benches: list[PgBench] = []

    # --- making clusters --------------------------------------------------------------------

    @staticmethod
    def make_base() -> Path:
        """A fresh 0755 directory under /tmp that the postgres user can traverse."""
        base = Path(tempfile.mkdtemp(prefix="walg-pg-", dir="/tmp"))
        base.chmod(0o755)
        return base

    @classmethod
    def create(
        cls,
        base: Path | None = None,
        *,
        data_checksums: bool = False,
        wal_dir: str | None = None,
        **options: Any,
    ) -> PgCluster:
        """initdb a new cluster (trust auth, superuser ``postgres``) and configure it; with
        ``wal_dir``, its pg_wal is a link to ``<base>/<wal_dir>`` (``initdb -X``)."""
        cluster = cls(base or cls.make_base(), **options)
        try:
            cluster._prepare_dirs()
            cluster.data_dir.mkdir(mode=0o700)
            _chown_tree(cluster.data_dir)
            command = [str(cluster.bin / "initdb"), "-D", str(cluster.data_dir), "--auth=trust"]
            command += ["-U", PG_USER, "--no-sync", "--encoding=UTF8", "--locale=C"]
            if data_checksums:
                command.append("--data-checksums")
            if wal_dir is not None:
                command += ["-X", str(cluster.make_dir(wal_dir))]
            cluster._run_as_server(command)
            with (cluster.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(f"\ninclude_if_exists = '{_CONF}'\n")
            cluster.configure()
        except BaseException:
            cluster.cleanup()
            raise
        return cluster

    @classmethod
    def adopt(cls, data_dir: Path, base: Path | None = None, **options: Any) -> PgCluster:
        """A cluster over an existing data directory (e.g. one walg restored), on a new port.

        Makes postgres own the directory (and the targets of pg_tblspc links), mode 0700,
        and rewrites walg_test.conf. Add recovery.signal/standby.signal before start() as
        the test needs.
        """
        cluster = cls(base or cls.make_base(), data_dir=data_dir, **options)
        cluster._prepare_dirs()
        cluster.fix_ownership()
        conf = data_dir / "postgresql.conf"
        if f"include_if_exists = '{_CONF}'" not in conf.read_text():
            with conf.open("a") as out:
                out.write(f"\ninclude_if_exists = '{_CONF}'\n")
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        cluster.configure()
        return cluster

    def _prepare_dirs(self) -> None:
        for directory in (self.socket_dir, self.log_file.parent):
            directory.mkdir(mode=0o755, exist_ok=True)
            _chown_tree(directory)

    def make_dir(self, name: str) -> Path:
        """``<base>/<name>``, created and owned by the postgres user (archive, tablespaces)."""
        path = self.base / name
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        _chown_tree(path)
        return path

    def fix_ownership(self) -> None:
        """Give PGDATA and tablespace directories to postgres, PGDATA with mode 0700."""
        _chown_tree(self.data_dir)
        self.data_dir.chmod(0o700)
        tblspc = self.data_dir / "pg_tblspc"
        if tblspc.is_dir():
            for link in tblspc.iterdir():
                if link.is_symlink():
                    _chown_tree(link.resolve())

    def configure(self) -> None:
        """(Re)write walg_test.conf from this object's settings; takes effect at next start."""
        values = {
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "listen_addresses": "'127.0.0.1'" if self.listen_tcp else "''",
            "wal_level": "replica",
            "archive_mode": "on" if self.archive_command is not None else "off",
            "max_wal_senders": "5",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        if self.archive_command is not None:
            values["archive_command"] = _quote(self.archive_command)
        if self.restore_command is not None:
            values["restore_command"] = _quote(self.restore_command)
        values.update(self.settings)
        text = "".join(f"{key} = {value}\n" for key, value in values.items())
        path = self.data_dir / _CONF
        path.write_text("# written by tests/servers/postgres.py\n" + text)
        _chown_tree(path)

    # --- running ----------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """PG* variables that point clients (psql, walg) at this cluster."""
        return {
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGUSER": PG_USER,
            "PGDATABASE": "postgres",
            "PGDATA": str(self.data_dir),
        }

    def start(self) -> None:
        """Start the server and wait until it accepts connections (or recovery is paused)."""
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file)]
        command += ["-w", "-t", str(int(_TIMEOUT)), "start"]
        try:
            self._run_as_server(command, env=self.server_env)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nserver log:\n{self.log_tail()}") from None
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, ``smart`` or ``immediate``)."""
        for bench in self._benches:
            bench.stop()
        self._benches.clear()
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w"]
        self._run_as_server([*command, "stop"])
        self.running = False

    def restart(self) -> None:
        """Stop (fast) and start again, e.g. after configure()."""
        self.stop()
        self.start()

    def promote(self) -> None:
        """Promote a standby or a server in recovery, waiting until it accepts writes."""
        self._run_as_server([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-w", "promote"])

    def cleanup(self) -> None:
        """Stop the server if it runs (immediate), walg's background workers started in
        it, and remove the base directory."""
        from servers.workers import stop_workers

        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if self.running or (self.data_dir / "postmaster.pid").exists():
                self.stop("immediate")
        stop_workers(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # --- clients ----------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql (unaligned, tuples only) and return its output, stripped."""
        command = [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-d", database, "-c", sql]
        done = self._client(command)
        return done.stdout.strip()

    def dumpall(self) -> str:
        """``pg_dumpall`` of every database and role: equal dumps mean equal data. The
        random ``\\restrict`` keys of recent pg_dump versions are left out."""
        out = self._client([str(self.bin / "pg_dumpall"), "--no-role-passwords"]).stdout
        return "".join(
            line
            for line in out.splitlines(keepends=True)
            if not line.startswith(("\\restrict ", "\\unrestrict "))
        )

    def pgbench_init(self, scale: int = 1, database: str = "postgres") -> None:
        """``pgbench -i -s scale`` (no vacuum, quiet)."""
        self._client([str(self.bin / "pgbench"), "-i", "-q", "-s", str(scale), database])

    def pgbench_run(
        self, seconds: int = 5, clients: int = 2, database: str = "postgres"
    ) -> PgBench:
        """Start ``pgbench -T seconds -c clients`` in the background; returns a handle."""
        command = [str(self.bin / "pgbench"), "-n", "-T", str(seconds), "-c", str(clients)]
        process = subprocess.Popen(
            [*command, database],
            env=self._client_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        bench = PgBench(process)
        self._benches.append(bench)
        return bench

    def _client_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(self.env)
        return env

    def _client(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            command,
            env=self._client_env(),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr.strip()}")
        return done

    def _run_as_server(
        self, command: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a server program as the postgres OS user (directly if we are not root)."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        full_env.update(env or {})
        full_env["PGDATA"] = str(self.data_dir)
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        done = subprocess.run(
            command,
            env=full_env,
            cwd="/",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout.strip()}")
        return done


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- fixtures -----------------------------------------------------------------------------------

ClusterFactory = Callable[..., PgCluster]


@pytest.fixture
def pg_cluster_factory() -> Iterator[ClusterFactory]:
    """Make started clusters: ``pg_cluster_factory(data_checksums=True, archive_command=...)``.

    Also ``pg_cluster_factory(adopt=restored_dir, ...)`` for an existing data directory.
    Every cluster made is stopped (immediate) and removed at teardown.
    """
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    made: list[PgCluster] = []

    def make(adopt: Path | None = None, start: bool = True, **options: Any) -> PgCluster:
        cluster = PgCluster.adopt(adopt, **options) if adopt else PgCluster.create(**options)
        made.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in reversed(made):
        cluster.cleanup()


@pytest.fixture
def pg_cluster(pg_cluster_factory: ClusterFactory) -> PgCluster:
    """One started cluster with default settings (archive_command = /bin/true)."""
    return pg_cluster_factory()
