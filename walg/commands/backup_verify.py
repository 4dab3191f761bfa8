"""``wal-g backup-verify [--json] [--replay] NAME|LATEST``: prove a backup restorable.

Exit 0 only if every object of the backup and of its delta chain was read and decoded,
every file's size and CRC-32C matched, every object and file its metadata names was found
(and page checksums held, on a cluster with data checksums); with ``--replay``, only if a
throwaway server then also reached consistency from it. A damaged or incomplete backup
exits 65 (``VerificationFailed``); 1 means the check could not be made.

Output: a one-line summary on stdout and one ERROR log line per problem on stderr, in the
log's format (capped; --json lists every problem) before the final error. This command prints those
problem lines itself: there is one per bad object or file, not one per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from walg import logs
from walg.errors import VerificationFailed, WalgError

if TYPE_CHECKING:
    from walg.backup.verify import VerifyReport
    from walg.config import Settings

__all__ = ["run"]

_REPLAY_MODULE = "walg.backup.replay"


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Verify ``args.backup_name`` (or LATEST); with ``args.replay``, replay it too."""
    from walg.backup.verify import backup_verify
    from walg.progress import ProgressReporter

    if args.replay:
        _replay_preflight(settings, args.backup_name)
    reporter = ProgressReporter("verify", "backup-verify")
    try:
        report = backup_verify(settings, args.backup_name, progress=reporter)
    except BaseException:
        reporter.finish(ok=False)  # the bar stays where it stopped
        raise
    reporter.finish()  # at 100%
    doc = report.to_json()
    if not report.ok:
        _print(args, report, doc)
        raise VerificationFailed(
            f"backup {report.backup} failed verification: {len(report.problems)} problem(s)"
            + (", replay not attempted" if args.replay else "")
        )
    if not args.json:
        _print(args, report, doc)
    if args.replay:
        doc["replay"] = _replay(settings, report.backup, args, report, doc)
        if not args.json:
            print(f"replay: {doc['replay']}")
    if args.json:
        _print(args, report, doc)
    return 0


def _replay(
    settings: Settings,
    name: str,
    args: argparse.Namespace,
    report: VerifyReport,
    doc: dict[str, Any],
) -> str:
    """Restore the verified backup into a throwaway server (walg.backup.replay)."""
    try:
        from walg.backup.replay import replay_backup
    except ModuleNotFoundError as err:
        if err.name != _REPLAY_MODULE:
            raise
        raise _unavailable() from None
    try:
        return replay_backup(settings, name)
    except WalgError as err:
        if args.json:
            doc["replay"] = None
            doc["replay_error"] = err.msg
            doc["ok"] = False
            _print(args, report, doc)
        raise


def _replay_available() -> None:
    """Fail at once, before the long verification, if --replay cannot run in this build."""
    from importlib.util import find_spec

    if find_spec(_REPLAY_MODULE) is None:
        raise _unavailable()


def _replay_preflight(settings: Settings, name: str) -> None:
    """What can be known before verifying: the replay exists in this build and can run
    here (not as root, server programs installed: ``replay_preflight``)."""
    _replay_available()
    from walg.backup import replay

    preflight = getattr(replay, "replay_preflight", None)
    if preflight is not None:
        preflight(settings, name)


def _unavailable() -> WalgError:
    return WalgError(
        "backup-verify --replay is not available in this build of walg "
        f"({_REPLAY_MODULE} is missing)",
        hint="run backup-verify without --replay, or upgrade walg",
    )


def _print(args: argparse.Namespace, report: VerifyReport, doc: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(doc, indent=2 if sys.stdout.isatty() else None))
        return
    print(report.summary())
    for line in report.notes:
        print(f"not checked: {line}")
    for message in report.error_messages():  # ERROR lines in the log's format (text or JSON)
        logs.write_event("error", message)
