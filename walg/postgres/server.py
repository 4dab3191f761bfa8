"""A throwaway PostgreSQL server that recovers a restored data directory to consistency.

The server is ``postgres`` itself (no pg_ctl), our child in a session of its own, so that
a Ctrl-C at the terminal reaches walg only and walg decides how to stop it. Its settings
are given on the command line, which wins over everything in the restored
postgresql.conf and postgresql.auto.conf: its own config, hba and ident files in the work
directory (the restored postgresql.conf is included if there is one; a Debian cluster keeps
it in /etc and the backup has none), ``data_directory`` pinned to the restored directory,
no TCP listener, the unix socket in the private work directory, no archiving, no hot
standby (so no client can connect and pg_control's parameter checks do not apply), and
``recovery_target = 'immediate'`` with ``recovery_target_action = 'shutdown'``: the server
stops by itself once it is consistent, logging "consistent recovery state reached at LSN"
and exiting 0. Any other end (FATAL, missing WAL, killed, the timeout) is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from walg import interrupts
from walg.errors import ReplayFailed

__all__ = [
    "RecoveryServer",
    "ServerEnd",
    "consistent_at",
    "control_settings",
    "recovery_conf_needed",
    "recovery_conf_text",
    "recovery_settings",
    "server_settings",
]

_CONSISTENT = re.compile(r"consistent recovery state reached at ([0-9A-Fa-f]+/[0-9A-Fa-f]+)")
_OTHER_TARGETS = ("recovery_target_lsn", "recovery_target_name", "recovery_target_time",
                  "recovery_target_xid")
_STOP_WAIT = 15.0  # seconds for a fast shutdown, then as long for an immediate one
# pg_controldata lines whose values the server must not go below while replaying (two-phase
# state needs max_prepared_transactions slots; the others keep shared memory comparable).
_CONTROL_PARAMETERS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


@dataclass(frozen=True)
class ServerEnd:
    """How the server's run ended: its exit status (None: still running when the wait ended,
    by timeout or a stop request) and the LSN at which it logged consistency, if it did."""

    status: int | None
    consistent_at: str | None


def server_settings(
    *,
    data_dir: str,
    work_dir: str,
    restore_command: str,
    major: str,
    control: Mapping[str, str],
) -> dict[str, str]:
    """The ``-c`` settings of the throwaway server (pure)."""
    values = {
        "config_file": os.path.join(work_dir, "postgresql.conf"),
        "hba_file": os.path.join(work_dir, "pg_hba.conf"),
        "ident_file": os.path.join(work_dir, "pg_ident.conf"),
        "data_directory": data_dir,
        "external_pid_file": "",
        "listen_addresses": "",
        "unix_socket_directories": work_dir,
        "port": "5432",  # any: only the socket in the private work directory is made
        "ssl": "off",
        "archive_mode": "off",
        "hot_standby": "off",
        "shared_preload_libraries": "",
        "shared_buffers": "128MB",
        "huge_pages": "off",
        "fsync": "off",  # a throwaway: nothing it writes is kept
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_min_messages": "warning",
        "log_line_prefix": "%m [%p] ",
        "lc_messages": "C",
    }
    if not recovery_conf_needed(major):  # before 12 these go into recovery.conf
        # Another target in the restored postgresql.auto.conf would clash with 'immediate':
        # unset them first (options apply in order; each target checks the others when set).
        values.update(dict.fromkeys(_OTHER_TARGETS, ""))
        values.update(recovery_settings(restore_command))
    if major.startswith("9.") or major in ("10", "11", "12", "13", "14"):
        values["stats_temp_directory"] = os.path.join(work_dir, "pg_stat_tmp")
    values.update(control)
    return values


def recovery_settings(restore_command: str) -> dict[str, str]:
    """Recover from the archive to the first consistent point, then shut down."""
    return {
        "restore_command": restore_command,
        "recovery_target": "immediate",
        "recovery_target_action": "shutdown",
    }


def recovery_conf_needed(major: str) -> bool:
    """Whether recovery settings go into recovery.conf (before PostgreSQL 12) instead of
    the server's settings with recovery.signal."""
    return major.startswith("9.") or major in ("10", "11")


def recovery_conf_text(restore_command: str) -> str:
    """recovery.conf for :func:`recovery_conf_needed` versions (pure)."""
    lines = [f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in
             recovery_settings(restore_command).items()]
    return "".join(line + "\n" for line in lines)


def control_settings(bindir: str, data_dir: str) -> dict[str, str]:
    """The server parameters pg_control of ``data_dir`` records (see _CONTROL_PARAMETERS)."""
    try:
        done = subprocess.run(
            [os.path.join(bindir, "pg_controldata"), "-D", data_dir],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ReplayFailed(f"pg_controldata failed on the restored backup: {err}") from None
    if done.returncode != 0:
        raise ReplayFailed(
            f"pg_controldata failed on the restored backup: {done.stderr.strip()}",
            hint="the restored pg_control is unreadable; the backup is damaged",
        )
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        name = _CONTROL_PARAMETERS.get(key.strip())
        if name is not None and value.strip().isdigit():
            values[name] = value.strip()
    return values


class RecoveryServer:
    """One run of ``postgres`` over a restored data directory; a context manager that
    always leaves no process of it behind."""

    def __init__(self, bindir: str, work_dir: str, log_path: str) -> None:
        self.postgres = os.path.join(bindir, "postgres")
        self.work_dir = work_dir
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RecoveryServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, settings: Mapping[str, str], env: Mapping[str, str]) -> None:
        _write_config_files(self.work_dir, settings["data_directory"])
        command = [self.postgres, "-D", settings["data_directory"], *_options(settings)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.work_dir, env=dict(env), start_new_session=True,
            )

    def wait(self, timeout: float) -> ServerEnd:
        """Wait until the server exits, ``timeout`` seconds pass or a stop is requested."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with _pidfd(self.process.pid) as pidfd:
            while self.process.poll() is None and not interrupts.requested():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                waiting = [fd for fd in (pidfd, interrupts.wakeup_fd()) if fd is not None]
                select.select(waiting, [], [], min(remaining, 1.0 if pidfd is None else 60.0))
        return ServerEnd(self.process.poll(), consistent_at(self.log_lines()))

    def stop(self) -> None:
        """Fast shutdown, then immediate, then SIGKILL; then anything left in its process
        group (a restore_command still running) is killed."""
        process = self.process
        if process is None:
            return
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_STOP_WAIT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def log_lines(self) -> list[str]:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return log.read().splitlines()
        except OSError:
            return []


def consistent_at(lines: Sequence[str]) -> str | None:
    """The LSN of the server's "consistent recovery state reached" line, if any (pure)."""
    for line in lines:
        match = _CONSISTENT.search(line)
        if match:
            return match.group(1)
    return None


def _options(settings: Mapping[str, str]) -> list[str]:
    options = []
    for name, value in settings.items():
        options += ["-c", f"{name}={value}"]
    return options


def _write_config_files(work_dir: str, data_dir: str) -> None:
    """The server's own config file (including the restored one when there is one) and an
    hba file that lets only this OS user in over the socket (hot standby is off anyway)."""
    restored = os.path.join(data_dir, "postgresql.conf").replace("'", "''")
    files = {
        "postgresql.conf": f"# wal-g backup-verify --replay\ninclude_if_exists = '{restored}'\n",
        "pg_hba.conf": "local all all peer\n",
        "pg_ident.conf": "",
    }
    for name, text in files.items():
        fd = os.open(os.path.join(work_dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    """A descriptor that becomes readable when ``pid`` exits (None where unsupported)."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)
