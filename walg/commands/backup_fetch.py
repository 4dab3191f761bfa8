"""``wal-g backup-fetch``: restore a base backup into an empty directory."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.config import Settings

__all__ = ["restore_spec_remap", "run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Restore ``args.backup_name`` (or LATEST) into ``args.destination``."""
    from walg.backup.fetch import backup_fetch, parse_tablespace_remap
    from walg.backup.recovery import RecoveryOptions
    from walg.progress import ProgressReporter

    name = _backup_name(args, settings)
    remap = parse_tablespace_remap(args.tablespace_map or [])
    spec = getattr(args, "restore_spec", None)
    if spec:
        remap = {**restore_spec_remap(spec, args.destination), **remap}  # the flag wins
    recovery = RecoveryOptions(
        standby=args.standby,
        target_time=args.target_time,
        target_lsn=args.target_lsn,
        target_name=args.target_name,
        target_action=args.target_action,
    )
    reporter = ProgressReporter("extract", "backup-fetch")
    try:
        result = backup_fetch(
            settings,
            args.destination,
            name,
            remap=remap,
            progress=reporter,
            recovery=recovery,
            restore_only=getattr(args, "restore_only", None),
        )
    except BaseException:
        reporter.finish(ok=False)  # the bar stays where it stopped
        raise
    reporter.finish()  # at 100%
    print(result.name)
    return 0


def restore_spec_remap(path: str, destination: str) -> dict[str, str]:
    """WAL-G's ``--restore-spec FILE`` as tablespace mappings ``{OID: location}``.

    The file is the shape of a sentinel's ``Spec``: ``{"base_prefix": PGDATA, "tablespaces":
    [OID, ...], OID: {"loc": DIR, "link": "pg_tblspc/OID"}, ...}``; each ``loc`` must be
    absolute, anything malformed is a ConfigError (exit 2). As in WAL-G, ``destination``
    (the DIR argument) is the data directory whatever ``base_prefix`` says: WAL-G extracts
    every file under DIR and reads ``base_prefix`` only as the place of the pg_tblspc links.
    walg makes the links in DIR (as it does without a spec, where WAL-G would use the
    sentinel's base_prefix, the backed-up PGDATA), so a ``base_prefix`` naming another
    directory is ignored with a warning instead of getting links (perhaps in a live
    cluster's PGDATA) while the tablespace files stay in DIR."""
    import json
    import os

    from walg.errors import ConfigError

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"bad restore spec {path}: {why}",
            hint='e.g. {"base_prefix": "/pgdata", "tablespaces": ["16384"], '
            '"16384": {"loc": "/new/space", "link": "pg_tblspc/16384"}}',
        )

    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except OSError as err:
        raise bad(f"cannot read it ({err.strerror})") from None
    except ValueError as err:
        raise bad(f"not JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("base_prefix"), str):
        raise bad("no base_prefix (the data directory)")
    if os.path.realpath(doc["base_prefix"]) != os.path.realpath(destination):
        from walg.logs import get_logger

        get_logger("walg").warning(
            f"restore spec {path}: base_prefix {doc['base_prefix']} is not {destination}; "
            f"restoring into {destination} (the directory argument, as WAL-G) with its "
            "tablespace links there"
        )
    names = doc.get("tablespaces", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad("tablespaces is not a list of names")
    remap = {}
    for name in names:
        entry = doc.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("loc"), str):
            raise bad(f"no entry with a loc for tablespace {name}")
        link = entry.get("link", f"pg_tblspc/{name}")
        if os.path.normpath(str(link)) != f"pg_tblspc/{name}":
            raise bad(f"tablespace {name}: link {link} is not pg_tblspc/{name}")
        if not os.path.isabs(entry["loc"]):
            raise bad(f"tablespace {name}: loc {entry['loc']} is not an absolute path")
        remap[name] = entry["loc"]
    return remap


def _backup_name(args: argparse.Namespace, settings: Settings) -> str:
    """NAME or LATEST, or the backup --target-user-data names (one of the two, as WAL-G).

    --reverse-unpack and --skip-redundant-tars need nothing: walg always writes each file
    once, from the newest backup of the chain that holds it, and reads only the tars that
    hold files it needs (see walg.format.chain.plan_restore)."""
    from walg.commands.backup_push import backup_by_user_data, check_target_storage
    from walg.errors import ConfigError

    check_target_storage(args)
    user_data = getattr(args, "target_user_data", None)
    from_setting = not user_data and settings.backup.fetch_target_user_data is not None
    if from_setting:  # WAL-G: the setting is the flag's default
        user_data = settings.backup.fetch_target_user_data
    if args.backup_name and user_data:
        where = "WALG_FETCH_TARGET_USER_DATA" if from_setting else "--target-user-data"
        raise ConfigError(
            f"both a backup name and {where} were given",
            hint=f"give the backup's NAME (or LATEST), or {where}, not both (as WAL-G)",
        )
    if args.backup_name:
        name: str = args.backup_name
        return name
    if not user_data:
        raise ConfigError(
            "no backup to restore: give its NAME (or LATEST), or --target-user-data JSON",
            hint="e.g. wal-g backup-fetch /var/lib/postgresql/16/main LATEST",
        )
    return backup_by_user_data(settings, user_data)
