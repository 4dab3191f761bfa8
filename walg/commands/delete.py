"""``wal-g delete MODE ... [--confirm]``: delete old backups and WAL by a retention rule.

Without ``--confirm`` only the plan is printed (see :mod:`walg.backup.deletion`).

Also the grammar of the modes (:data:`MODES`, :func:`common_flags`, used by
``walg.cli_parser``), so this module imports nothing heavy at its top.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["MODES", "common_flags", "positive_int", "run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Plan, print, and with ``args.confirm`` carry out the deletion ``args.delete_mode``."""
    from walg.backup.deletion import DeleteRequest, delete
    from walg.config.widths import listing_threads
    from walg.storage import open_storage

    argument = getattr(args, "count", None)
    if argument is None:
        argument = getattr(args, "target", None)
    if args.delete_mode == "target" and argument is None and not args.target_user_data:
        from walg.errors import ConfigError

        raise ConfigError(
            "delete target needs the backup: NAME, or --target-user-data DATA",
            hint="e.g. wal-g delete target base_000000010000000000000004",
        )
    request = DeleteRequest(
        mode=args.delete_mode,
        modifier=args.modifier,
        argument=argument,
        confirm=args.confirm,
        after=getattr(args, "after", None),
        start_time=bool(getattr(args, "use_sentinel_time", False)),
        without_backup_check=bool(getattr(args, "without_backup_check", False)),
        user_data=getattr(args, "target_user_data", None),
    )
    storage = open_storage(settings)
    storage.check_present()  # a missing file storage folder is an error, not an empty archive
    delete(storage, request, workers=listing_threads(settings.concurrency))
    return 0


# -- grammar --------------------------------------------------------------------------------


def common_flags() -> argparse.ArgumentParser:
    """The flags every mode takes (WAL-G's persistent flags of ``delete``)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--confirm", action="store_true", help="really delete (without it: only show the plan)"
    )
    flags.add_argument(
        "--use-sentinel-time",
        action="store_true",
        help="compare a TIME with each backup's recorded start time, not with when its "
        "sentinel was written (backup-list's time); walg orders by start time always",
    )
    return flags


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a retention count; also the parser's --timeline)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _modifier(parser: argparse.ArgumentParser, choices: tuple[str, ...], help_text: str) -> None:
    """WAL-G's optional upper-case word before a delete mode's main argument."""
    parser.add_argument(
        "modifier", nargs="?", choices=choices, metavar="|".join(choices), help=help_text
    )


_FIND_FULL = "FIND_FULL: also keep the full backups that kept deltas depend on"
_TIME = "a time as backup-list shows it, e.g. 2024-01-31T23:59:59Z"


def _retain(parser: argparse.ArgumentParser) -> None:
    _modifier(parser, ("FULL", "FIND_FULL"), "FULL: count only full backups; " + _FIND_FULL)
    parser.add_argument("count", metavar="COUNT", type=positive_int, help="backups to keep")
    parser.add_argument(
        "-a", "--after", metavar="NAME|TIME",
        help=f"also keep that backup and newer ones, or those at or after TIME ({_TIME})",
    )  # fmt: skip


def _before(parser: argparse.ArgumentParser) -> None:
    _modifier(parser, ("FIND_FULL",), _FIND_FULL)
    parser.add_argument("target", metavar="NAME|TIME", help=f"backup name, or {_TIME}")


def _everything(parser: argparse.ArgumentParser) -> None:
    _modifier(parser, ("FORCE",), "FORCE: delete permanent backups too")


class _TargetWords(argparse.Action):
    """``[FIND_FULL] [NAME]`` (NAME optional with --target-user-data), as WAL-G reads them."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        words = list(values or [])
        modifier = words.pop(0) if words and words[0] == "FIND_FULL" else None
        if len(words) > 1:
            parser.error("expected [FIND_FULL] NAME, got: " + " ".join(values or []))
        namespace.modifier = modifier
        namespace.target = words[0] if words else None


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "words", nargs="*", action=_TargetWords, metavar="[FIND_FULL] NAME",
        help="backup name (or LATEST); FIND_FULL: for a delta, delete from its full base on",
    )  # fmt: skip
    parser.add_argument(
        "--target-user-data", metavar="DATA",
        help="delete the one backup with this UserData (JSON, else text) instead of NAME",
    )  # fmt: skip
    parser.set_defaults(modifier=None, target=None)


def _garbage(parser: argparse.ArgumentParser) -> None:
    _modifier(parser, ("ARCHIVES", "BACKUPS"), "only WAL archives, or only backups (default: both)")
    parser.add_argument(
        "--without-backup-check", action="store_true",
        help="with no backup but permanent ones, delete the WAL anyway",
    )  # fmt: skip


#: ``(name, help, add_arguments)`` of each mode, in ``wal-g delete --help``'s order.
MODES: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("retain", "keep the newest COUNT backups, delete older ones", _retain),
    ("before", "delete backups (and WAL) older than a name or time", _before),
    ("everything", "delete every backup and WAL file", _everything),
    ("target", "delete one backup (and the deltas based on it)", _target),
    ("garbage", "delete unfinished backups and unneeded WAL", _garbage),
)
