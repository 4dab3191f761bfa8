"""Recovery settings that backup-fetch can write for point-in-time recovery or a standby.

Only when asked (``--standby`` or a ``--target-*`` option), as WAL-G writes nothing beyond
the data: ``restore_command`` running this same wal-g with the same configuration,
optional ``recovery_target_*`` and ``recovery_target_action``, and recovery.signal (or
standby.signal). The configuration goes into ``walg_restore.json`` (mode 0600) inside the
restored PGDATA, because PostgreSQL runs restore_command with its own environment; backups
never include that file (see scan.py).

Those settings stay in postgresql.auto.conf after recovery ends, so a later backup of the
promoted cluster carries them. Every backup-fetch therefore disables (comments out) the
settings an earlier backup-fetch wrote (:func:`disable_previous`): a stale
recovery_target_time would otherwise clash with the next restore's own target, and the
old restore_command names a configuration file the backup does not hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from walg.config import Settings
from walg.errors import ConfigError
from walg.fsutil import fsync_dir
from walg.postgres.wal import format_lsn, parse_lsn

__all__ = [
    "CONFIG_NAME",
    "RecoveryOptions",
    "disable_previous",
    "disabled_lines",
    "recovery_lines",
    "restore_command",
    "walg_command",
    "write_recovery",
]

CONFIG_NAME = "walg_restore.json"
MARKER = "# written by wal-g backup-fetch"
_DISABLED = "# disabled by a later wal-g backup-fetch: "
_OURS = (
    "restore_command",
    "recovery_target_time",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_action",
)
ACTIONS = ("pause", "promote", "shutdown")


@dataclass(frozen=True)
class RecoveryOptions:
    """What the user asked backup-fetch to set up."""

    standby: bool = False
    target_time: str | None = None
    target_lsn: str | None = None
    target_name: str | None = None
    target_action: str | None = None

    @property
    def requested(self) -> bool:
        return self.standby or any(
            v is not None
            for v in (self.target_time, self.target_lsn, self.target_name, self.target_action)
        )

    def check(self) -> None:
        """Raise ConfigError for combinations PostgreSQL would refuse at start-up."""
        targets = [t for t in (self.target_time, self.target_lsn, self.target_name) if t]
        if len(targets) > 1:
            raise ConfigError(
                "give at most one of --target-time, --target-lsn, --target-name",
                hint="PostgreSQL accepts a single recovery target",
            )
        if self.target_action and not targets:
            raise ConfigError("--target-action needs a target", hint="add --target-time etc.")
        if self.target_action and self.target_action not in ACTIONS:
            raise ConfigError(f"--target-action must be one of {', '.join(ACTIONS)}")
        if self.standby and targets:
            raise ConfigError(
                "--standby follows the archive forever; it takes no recovery target",
                hint="drop --standby for point-in-time recovery",
            )
        if self.target_lsn:
            try:
                parse_lsn(self.target_lsn)
            except ValueError as err:
                raise ConfigError(
                    f"--target-lsn {self.target_lsn!r} is not an LSN", hint="e.g. 0/3000060"
                ) from err


def walg_command(argv0: str | None = None) -> list[str]:
    """How to run this same wal-g: its script if run as ``wal-g``, else ``python -m walg``."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    if os.path.basename(argv0) == "wal-g":
        return [os.path.abspath(argv0)]
    return [sys.executable, "-m", "walg"]


def restore_command(walg: Sequence[str], config_path: str) -> str:
    """The restore_command value (shell words quoted; %f and %p left for PostgreSQL)."""
    words = [*walg, "--config", config_path]
    return " ".join(shlex.quote(w) for w in words) + " wal-fetch %f %p"


def recovery_lines(options: RecoveryOptions, command: str) -> list[str]:
    """postgresql.auto.conf lines for ``options`` (pure)."""

    def setting(name: str, value: str) -> str:
        return f"{name} = '{value.replace(chr(39), chr(39) * 2)}'"

    lines = [setting("restore_command", command)]
    if options.target_time:
        lines.append(setting("recovery_target_time", options.target_time))
    if options.target_lsn:
        lines.append(setting("recovery_target_lsn", format_lsn(parse_lsn(options.target_lsn))))
    if options.target_name:
        lines.append(setting("recovery_target_name", options.target_name))
    if options.target_action:
        lines.append(setting("recovery_target_action", options.target_action))
    return lines


def disabled_lines(lines: Sequence[str]) -> list[str]:
    """``lines`` of postgresql.auto.conf with the settings that follow our marker commented
    out (pure); everything else is kept as it is."""
    result = []
    ours = False
    for line in lines:
        name = line.split("=", 1)[0].strip()
        if line.rstrip("\n") == MARKER:
            ours = True
        elif ours and "=" in line and name in _OURS:
            line = _DISABLED + line
        else:
            ours = False
        result.append(line)
    return result


def disable_previous(target: str) -> bool:
    """Comment out the recovery settings an earlier backup-fetch left in ``target``'s
    postgresql.auto.conf (restored with the backup); whether there were any."""
    path = os.path.join(target, "postgresql.auto.conf")
    try:
        with open(path, encoding="utf-8") as conf:
            lines = conf.readlines()
    except FileNotFoundError:
        return False
    changed = disabled_lines(lines)
    if changed == lines:
        return False
    replace_file(path, "".join(changed))
    return True


def write_recovery(target: str, options: RecoveryOptions, settings: Settings) -> None:
    """Write the config file, the recovery settings and the signal file into ``target``."""
    config_path = os.path.join(target, CONFIG_NAME)
    doc = {name: secret.reveal() for name, secret in settings.given}
    replace_file(config_path, json.dumps(doc, indent=2))
    command = restore_command(walg_command(), config_path)
    auto_conf = os.path.join(target, "postgresql.auto.conf")
    try:
        with open(auto_conf, encoding="utf-8") as conf:
            text = conf.read()
    except FileNotFoundError:
        text = ""
    text += f"\n{MARKER}\n" + "".join(line + "\n" for line in recovery_lines(options, command))
    replace_file(auto_conf, text)
    signal = "standby.signal" if options.standby else "recovery.signal"
    replace_file(os.path.join(target, signal), "")


def replace_file(path: str, text: str) -> None:
    """Make ``path`` hold ``text`` durably and atomically: a temporary file in the same
    directory, fsynced, renamed over ``path``, and the directory fsynced. A crash leaves
    the old content or the new, never a truncated file. The mode of an existing ``path``
    is kept (0600 for a new one)."""
    directory = os.path.dirname(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, temp = tempfile.mkstemp(prefix=".walg-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(directory)
