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

import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from walg.config import Settings
from walg.errors import ConfigError
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
    with open(path, "w", encoding="utf-8") as conf:
        conf.writelines(changed)
    return True


def write_recovery(target: str, options: RecoveryOptions, settings: Settings) -> None:
    """Write the config file, the recovery settings and the signal file into ``target``."""
    config_path = os.path.join(target, CONFIG_NAME)
    doc = {name: secret.reveal() for name, secret in settings.given}
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2)
    command = restore_command(walg_command(), config_path)
    with open(os.path.join(target, "postgresql.auto.conf"), "a", encoding="utf-8") as conf:
        conf.write(f"\n{MARKER}\n")
        conf.write("".join(line + "\n" for line in recovery_lines(options, command)))
    signal = "standby.signal" if options.standby else "recovery.signal"
    open(os.path.join(target, signal), "w").close()
