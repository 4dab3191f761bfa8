"""The ``wal-g`` command line's grammar: every command, its arguments and help.

Kept apart from :mod:`walg.cli` so that ``wal-g wal-push`` handed to a running daemon
never pays for argparse and dataclasses (~15 ms per WAL segment).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from walg import __version__
from walg.commands.delete import MODES as _delete_modes  # light: grammar only
from walg.commands.delete import common_flags as _delete_flags
from walg.commands.delete import positive_int as _positive_int
from walg.commands.st import add_arguments as _st_args

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = [
    "COMMANDS",
    "DELETE_MODES",
    "PROG",
    "Command",
    "CommandLoader",
    "CommandRunner",
    "build_parser",
    "guide_path",
    "import_command",
]

#: A command's entry point: ``run(args, settings) -> exit code``.
CommandRunner = Callable[[argparse.Namespace, "Settings"], int]
#: Turns a command name into its runner; :func:`import_command` unless a test passes its own.
CommandLoader = Callable[[str], CommandRunner]

PROG = "wal-g"


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with room for the longest command name on one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)
        # argparse measures subcommand names without their extra indent, so the longest one
        # ("backup-fetch") would wrap; start the help column far enough right for it.
        self._action_max_length = 18

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # argparse's, without breaking a word at a hyphen: the guide's path in the epilog
        # (/opt/walg-venv/...) must stay whole to be copied.
        import textwrap

        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False,
                             break_long_words=False)


@dataclass(frozen=True)
class Command:
    """One ``wal-g`` command: its name, one-line help, and how to declare its arguments."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]

    @property
    def module(self) -> str:
        """The module that implements the command, e.g. ``walg.commands.wal_push``."""
        return "walg.commands." + self.name.replace("-", "_")


class _Parser(argparse.ArgumentParser):
    """The root parser: a command's options may come before, between or after its
    positional words, as cobra accepts them (see :func:`options_last`)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        import sys

        words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(options_last(self, words), namespace)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options_last(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """``words`` with each (sub)command's options moved after its positional words.

    argparse stops filling optional positionals at the first option (``backup-fetch DIR
    --reverse-unpack LATEST`` would leave LATEST over), and a ``delete`` option before the
    mode (``delete --confirm retain 5``) belongs to no parser; cobra takes both. The
    parser's own options before its command word stay in place. Anything unusual (an
    option it does not know exactly, ``--``, a missing value) leaves the rest unchanged,
    for argparse to read or reject as before.
    """
    subs = _subparsers(parser)
    if not subs:
        return _leaf_options_last(parser, words)
    root, index = parser.prog == PROG, 0
    while index < len(words) and words[index].startswith("-") and words[index] != "--":
        taken = _values_taken(parser, words[index])
        if taken < 0 and root:
            return words
        index += 1 + max(taken, 0)  # delete's options before the mode are its modes' flags
    if index >= len(words) or words[index] not in subs:
        return words
    before, moved = (words[:index], []) if root else ([], words[:index])
    rest = options_last(subs[words[index]], words[index + 1 :] + moved)
    return [*before, words[index], *rest]


def _values_taken(parser: argparse.ArgumentParser, word: str) -> int:
    """How many words option ``word`` takes after it (0 for ``--opt=value``); -1 when
    unknown or variable, so that the caller stops."""
    if word.startswith("--") and "=" in word:
        return 0 if word.partition("=")[0] in parser._option_string_actions else -1
    action = parser._option_string_actions.get(word)
    if action is None:
        return -1
    if action.nargs is None:
        return 1
    return action.nargs if isinstance(action.nargs, int) else -1


def _leaf_options_last(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    positional: list[str] = []
    options: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            return words
        if not word.startswith("-") or word == "-":
            positional.append(word)
            index += 1
            continue
        taken = _values_taken(parser, word)
        if taken < 0 or index + taken >= len(words) + (0 if taken else 1):
            return words
        options += words[index : index + 1 + taken]
        index += 1 + taken
    return positional + options


def _backup_push_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pgdata", metavar="PGDATA", nargs="?",
                        help="data directory of the running cluster (default: $PGDATA)")
    parser.add_argument(
        "-f", "--full", action="store_true", help="take a full backup even if deltas are enabled"
    )
    parser.add_argument(
        "--delta-from-name", metavar="NAME", help="take a delta backup based on this backup"
    )
    parser.add_argument(
        "-p", "--permanent", action="store_true", help="mark the new backup permanent"
    )
    parser.add_argument(
        "-v",
        "--verify",
        action="store_true",
        help="check page checksums while reading (clusters with data checksums on)",
    )
    parser.add_argument("--add-user-data", metavar="JSON",
                        help="UserData for the new backup (as WALG_SENTINEL_USER_DATA)")
    parser.add_argument("--delta-from-user-data", metavar="JSON",
                        help="take a delta backup based on the backup with this UserData")
    wal_g = parser.add_argument_group("WAL-G flags walg accepts with a warning (see README)")
    wal_g.add_argument("--without-files-metadata", action="store_true", help="full backup")
    for short, long in (("-s", "--store-all-corrupt"), ("-r", "--rating-composer"),
                        ("-c", "--copy-composer"), ("-b", "--database-composer")):
        wal_g.add_argument(short, long, action="store_true", help="ignored")
    _target_storage(wal_g)


def _target_storage(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--target-storage", metavar="NAME", help="only 'default' (the primary)")


def _backup_fetch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("destination", metavar="DIR", help="empty directory to restore into")
    parser.add_argument("backup_name", metavar="NAME", nargs="?",
                        help="backup name, or LATEST for the newest (or --target-user-data)")
    parser.add_argument("--target-user-data", metavar="JSON",
                        help="restore the backup whose UserData is this JSON value")
    parser.add_argument("--reverse-unpack", action="store_true",
                        help="walg's only way: each file written once, from its newest copy")
    parser.add_argument("--skip-redundant-tars", action="store_true",
                        help="walg's only way: only tars holding needed files are read")
    _target_storage(parser)
    parser.add_argument(
        "--tablespace-map",
        metavar="OID=DIR",
        action="append",
        help="restore tablespace OID (or old location) into DIR instead; repeatable",
    )
    parser.add_argument("--restore-spec", metavar="FILE",
                        help="WAL-G's restore spec (JSON): where each tablespace goes")
    parser.add_argument(
        "--restore-only",
        metavar="DB[,DB/TABLE...]",
        action="append",
        help="restore only these databases (or tables): 'db', 'db/table', 'db/schema.table'; "
        "comma-separated or repeated, '*' a wildcard; system databases and catalogs always",
    )
    recovery = parser.add_argument_group(
        "recovery settings (written only when one of these is given)",
        "restore_command = this wal-g with this configuration, plus recovery.signal",
    )
    recovery.add_argument(
        "--standby", action="store_true", help="write standby.signal: follow the archive"
    )
    recovery.add_argument("--target-time", metavar="TIME", help="recovery_target_time")
    recovery.add_argument("--target-lsn", metavar="LSN", help="recovery_target_lsn")
    recovery.add_argument("--target-name", metavar="NAME", help="recovery_target_name")
    recovery.add_argument(
        "--target-action",
        choices=("pause", "promote", "shutdown"),
        help="recovery_target_action",
    )


def _backup_verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "backup_name", metavar="NAME", help="backup name, or LATEST for the newest backup"
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON report (for exporters and cron)"
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="then restore it into a throwaway server and wait until it is consistent",
    )


def _backup_list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detail", action="store_true", help="show more fields per backup")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--pretty", action="store_true", help="indent the output for humans")


def _backup_mark_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup_name", metavar="NAME", help="backup to mark")
    parser.add_argument(
        "-i",
        "--impermanent",
        action="store_true",
        help="remove the permanent mark instead of setting it",
    )


def _wal_push_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("wal_path", metavar="PATH", help="WAL file to archive (%%p)")
    parser.add_argument("--pg-ready-rename", action="store_true",
                        help="WAL-G's; no effect (a warning): walg leaves .ready files to "
                        "PostgreSQL")


def _daemon_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "socket", metavar="SOCKET", help="unix socket to listen on (WALG_DAEMON_SOCKET of wal-push)"
    )


def _wal_fetch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("wal_name", metavar="NAME", help="WAL file name to fetch (%%f)")
    parser.add_argument("destination", metavar="DEST", help="path to write it to (%%p)")
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="fetch only this file: no prefetch cache, no background prefetcher",
    )


def _wal_verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checks", metavar="CHECK", nargs="+", choices=("integrity", "timeline"),
        help="integrity: no segment missing from the oldest backup on; timeline: the "
        "current timeline is the highest in storage",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (WAL-G's shape)")
    parser.add_argument(
        "--exit-code", action="store_true",
        help="walg only: exit 3 when a check reports FAILURE (default: 0, as WAL-G)",
    )
    parser.add_argument(
        "--timeline", type=_positive_int, metavar="TLI",
        help="verify for this timeline instead of the server's (with --lsn)",
    )
    parser.add_argument(
        "--lsn", metavar="LSN", help="verify up to this LSN, not the server's (with --timeline)"
    )
    parser.add_argument(
        "--backup-name", metavar="NAME", help="start from this backup instead of the oldest"
    )


def _wal_show_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detailed-json", action="store_true", help="print detailed JSON (WAL-G's shape)"
    )
    parser.add_argument(
        "--without-backups", action="store_true", help="do not look up backups per timeline"
    )


#: The modes of ``wal-g delete``, each a sub-command with its own arguments and ``--confirm``.
DELETE_MODES: tuple[Command, ...] = tuple(Command(*mode) for mode in _delete_modes)


def _add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    commands: Sequence[Command],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> None:
    """Declare ``commands`` (with their arguments) as choices of ``subparsers``."""
    for command in commands:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            parents=list(parents),
            formatter_class=_HelpFormatter,
        )
        command.add_arguments(sub)


def _delete_args(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_subparsers(dest="delete_mode", metavar="MODE", title="modes", required=True)
    _add_commands(modes, DELETE_MODES, parents=[_delete_flags()])


#: Every command, in the order ``wal-g --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("backup-push", "take a base backup of a running PostgreSQL", _backup_push_args),
    Command("backup-fetch", "restore a base backup into an empty directory", _backup_fetch_args),
    Command(
        "backup-verify",
        "check a backup is whole and readable, writing nothing",
        _backup_verify_args,
    ),
    Command("backup-list", "list the backups in storage", _backup_list_args),
    Command("backup-mark", "mark a backup permanent (or impermanent)", _backup_mark_args),
    Command("delete", "delete old backups and WAL (retain, before, ...)", _delete_args),
    Command("wal-push", "archive one WAL file (archive_command)", _wal_push_args),
    Command(
        "wal-fetch", "fetch one WAL file (restore_command; exit 74 if absent)", _wal_fetch_args
    ),
    Command("daemon", "serve wal-push from a warm process on a unix socket", _daemon_args),
    Command("wal-verify", "check the WAL archive: integrity, timeline", _wal_verify_args),
    Command("wal-show", "show the timelines, gaps and backups in the WAL archive", _wal_show_args),
    Command("st", "(DANGEROUS) storage tools: ls, cat, get, put, rm, check", _st_args),
)


def guide_path() -> str:
    """Where walg's README.md is on this machine: installed with the package as
    ``walg/docs/README.md`` (package data), or a source checkout's own README.md."""
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "docs", "README.md")
    checkout = os.path.join(os.path.dirname(package), "README.md")
    return installed if os.path.isfile(installed) or not os.path.isfile(checkout) else checkout


def build_parser() -> argparse.ArgumentParser:
    """Build the ``wal-g`` argument parser with every command in :data:`COMMANDS`."""
    parser = _Parser(
        prog=PROG,
        description="Backup and restore for PostgreSQL, compatible with WAL-G.",
        epilog="Configuration comes from the environment (WALG_*, AWS_*, PG*) or --config "
        f"FILE. The guide (README.md) is installed at {guide_path()}",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "-v", "--version", action="version", version=f"%(prog)s (walg) {__version__}"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file: .json, .yaml/.yml or .toml (default: ~/.walg.json, .toml, "
        ".yaml or .yml, or WALG_CONFIG_PATH; the environment wins); allowed anywhere",
    )
    parser.add_argument("--turbo", action="store_true", help="ignore the rate limits")
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        title="commands",
        required=True,
        parser_class=argparse.ArgumentParser,
    )
    _add_commands(commands, COMMANDS)
    helper = commands.add_parser("help", help="show the help of a command")
    helper.add_argument("topic", metavar="COMMAND", nargs="*", help="command (and delete mode)")
    return parser


def import_command(name: str) -> CommandRunner:
    """Import the module of command ``name`` and return its ``run``."""
    by_name = {command.name: command for command in COMMANDS}
    module = importlib.import_module(by_name[name].module)
    run: CommandRunner = module.run
    return run
