"""Partial restore, as WAL-G: DatabasesByNames recorded by backup-push, read by
``backup-fetch --restore-only``.

Recording (:func:`collect_databases`): every database that accepts connections, its OID
and its relations (``pg_class`` rows with a file) by ``namespace.name``, partitions and
inheritors under their top table's ``subtables`` — WAL-G's getTables, so WAL-G's own
partial restore works on walg's backups. One connection per database, as WAL-G must
(``pg_class`` is per database), but several at once (WAL-G connects one after another).
A database walg cannot connect to is left out with a warning, as WAL-G does.

Restoring (:func:`excluded_files`), WAL-G's rules (RegexpRestoreDescMaker, RestoreDesc):
- ``--restore-only`` takes ``db``, ``db/table`` (table in ``public``), ``db/schema.table``
  or ``db/schema/table``; ``*`` matches any run of characters (WAL-G treats the names as
  regular expressions; walg matches every other character literally);
- files outside ``base/`` and ``pg_tblspc/``, and every file of databases with an OID
  below 16384 (template1, template0, postgres), are always restored, as are files whose
  name is not a number (PG_VERSION, pg_filenode.map);
- in every other database, the files of system relations (OID below 16384: the catalogs)
  are restored, so that the database can be connected to and dropped; the files of the
  other relations only if selected. A database named whole is restored whole (WAL-G
  restores the relations it recorded; walg also keeps files it did not record). A
  selected table brings its subtables and its TOAST table and TOAST index;
- unlike WAL-G, a name that matches no database (or table) is an error, raised before
  anything is written (exit 1, as WAL-G's errors; never 2).
Skipped files are not written at all, as in WAL-G: queries on a skipped relation fail
with "could not open file"; DROP DATABASE works.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

from walg.config import Settings
from walg.errors import IntegrityError, WalgError
from walg.format.meta import DatabaseObjects, FilesMetadata, RelationInfo
from walg.logs import get_logger
from walg.postgres import relations as pg_relations
from walg.postgres.connection import PgConnection, connect

__all__ = [
    "SYSTEM_OID_LIMIT",
    "build_tables",
    "collect_databases",
    "excluded_files",
    "parse_restore_only",
    "plan_exclusions",
    "record_databases",
    "require_databases",
    "resolve",
    "skippable_parts",
]

SYSTEM_OID_LIMIT = 16384  # FirstNormalObjectId: OIDs below it come from initdb
_CONNECTIONS = 8  # databases inspected at once
_log = get_logger("walg")


# --- recording ------------------------------------------------------------------------------


def build_tables(rows: Iterable[pg_relations.RelationRow]) -> dict[str, RelationInfo]:
    """WAL-G's getTables: the relations without a parent by ``namespace.name``, each with
    every relation below it (partitions, inheritors, at any depth) in ``subtables``."""
    found: dict[str, RelationInfo] = {}
    children: dict[str, list[str]] = {}
    tops: list[str] = []
    for row in rows:
        name = f"{row.namespace}.{row.name}"
        found[name] = RelationInfo(row.oid, row.relfilenode)
        if row.parent:  # WAL-G takes the parent to be in the child's namespace
            children.setdefault(f"{row.namespace}.{row.parent}", []).append(name)
        else:
            tops.append(name)
    tables = {}
    for top in tops:
        below: dict[str, RelationInfo] = {}
        stack = list(children.get(top, ()))
        while stack:
            name = stack.pop()
            if name not in below:
                below[name] = found.get(name, RelationInfo(0, 0))
                stack.extend(children.get(name, ()))
        tables[top] = dataclasses.replace(found[top], subtables=below)
    return tables


def collect_databases(settings: Settings, pg: PgConnection) -> dict[str, DatabaseObjects]:
    """DatabasesByNames of the cluster ``pg`` is connected to (see the module docstring)."""
    rows = pg_relations.databases(pg)
    width = max(1, min(_CONNECTIONS, len(rows)))
    with concurrent.futures.ThreadPoolExecutor(width, thread_name_prefix="walg-db") as pool:
        tables = list(pool.map(lambda db: _tables_of(settings, db), rows))
    return {
        db.name: DatabaseObjects(db.oid, found)
        for db, found in zip(rows, tables, strict=True)
        if found is not None
    }


def record_databases(settings: Settings, pg: PgConnection) -> dict[str, DatabaseObjects] | None:
    """:func:`collect_databases`, or None with a warning if that fails: the backup is
    whole without DatabasesByNames (only --restore-only needs it)."""
    try:
        return collect_databases(settings, pg)
    except WalgError as err:
        _log.warning(
            "no DatabasesByNames: partial restore of this backup will not work", error=err.msg
        )
        return None


def _tables_of(settings: Settings, db: pg_relations.DatabaseRow) -> dict[str, RelationInfo] | None:
    try:
        with connect(dataclasses.replace(settings.postgres, database=db.name)) as conn:
            return build_tables(pg_relations.relations(conn))
    except WalgError as err:
        _log.warning("database left out of DatabasesByNames", database=db.name, error=err.msg)
        return None


# --- restoring ------------------------------------------------------------------------------


def parse_restore_only(values: Sequence[str]) -> list[str]:
    """The names given to ``--restore-only`` (repeatable, comma-separated, double quotes
    around a name with commas or spaces: cobra's string slice, which reads CSV)."""
    names: list[str] = []
    for value in values:
        try:
            names += next(csv.reader([value], skipinitialspace=False), [])
        except csv.Error as err:
            raise WalgError(f"--restore-only {value!r}: {err}") from None
    names = [n for n in names if n]
    if not names:
        raise WalgError(
            "--restore-only needs at least one database",
            hint="e.g. --restore-only=db1,db2 or --restore-only=db1/schema.table",
        )
    return names


def _split(key: str) -> tuple[str, str]:
    """WAL-G's unpackKey: (database, "namespace.table" or "")."""
    tokens = key.split("/")
    table = ""
    if len(tokens) == 2:
        table = tokens[1]
    elif len(tokens) == 3:
        table = f"{tokens[1]}.{tokens[2]}"
    if len(tokens) > 3 or table.count(".") > 1:
        raise WalgError(
            f"--restore-only {key!r}: expected 'db', 'db/table' or 'db/schema.table'"
        )
    if table and "." not in table:
        table = "public." + table
    return tokens[0], table


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in text.split("*")))


def resolve(
    databases: Mapping[str, DatabaseObjects], keys: Sequence[str]
) -> dict[int, frozenset[int] | None]:
    """For each database OID, the relfilenodes to restore (None: all its files). Databases
    not in the result lose every relation file but those of their catalogs."""
    keep: dict[int, set[int] | None] = {
        db.oid: {r.relfilenode for r in db.tables.values() if r.oid < SYSTEM_OID_LIMIT}
        for db in databases.values()
    }
    unknown = []
    for key in keys:
        db_text, table_text = _split(key)
        matched = [db for name, db in databases.items() if _pattern(db_text).fullmatch(name)]
        if not table_text:
            keep.update((db.oid, None) for db in matched)
        hits = 0
        for db in matched if table_text else ():
            for name, rel in db.tables.items():
                if _pattern(table_text).fullmatch(name):
                    hits += 1
                    _keep(keep, db, rel)
        if not matched or (table_text and not hits):
            unknown.append(key)
    if unknown:
        raise WalgError(
            f"--restore-only: the backup has no {', '.join(repr(k) for k in unknown)}",
            hint=f"its databases: {', '.join(sorted(databases))}",
        )
    return {oid: None if nodes is None else frozenset(nodes) for oid, nodes in keep.items()}


def _keep(keep: dict[int, set[int] | None], db: DatabaseObjects, rel: RelationInfo) -> None:
    nodes = keep.get(db.oid)
    if nodes is None:
        return  # the whole database is restored
    nodes.add(rel.relfilenode)
    nodes.update(sub.relfilenode for sub in rel.subtables.values())
    for toast in (f"pg_toast.pg_toast_{rel.oid}", f"pg_toast.pg_toast_{rel.oid}_index"):
        if toast in db.tables:
            nodes.add(db.tables[toast].relfilenode)


def _number(text: str) -> int:
    head = text.split(".", 1)[0].split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def excluded_files(
    names: Iterable[str], keep: Mapping[int, frozenset[int] | None]
) -> frozenset[str]:
    """The files of ``names`` (relative to PGDATA) that a restore with ``keep`` (from
    :func:`resolve`) leaves out: WAL-G's TryGetOidPair and IsSkipped."""
    excluded = set()
    for name in names:
        if not name.startswith(("base/", "pg_tblspc/")):
            continue
        parent, _, base = name.rpartition("/")
        relfilenode = _number(base)
        database = _number(parent.rpartition("/")[2])
        if database < SYSTEM_OID_LIMIT or relfilenode == 0:
            continue
        nodes = keep.get(database, frozenset())
        if nodes is not None and relfilenode not in nodes:
            excluded.add(name)
    return frozenset(excluded)


def require_databases(
    backup: str, databases: Mapping[str, DatabaseObjects] | None
) -> Mapping[str, DatabaseObjects]:
    """The backup's DatabasesByNames, or an error saying why --restore-only cannot work."""
    if not databases:
        raise IntegrityError(
            f"backup {backup} has no DatabasesByNames in its files metadata: "
            "--restore-only cannot tell its databases apart",
            hint="it was taken by an older walg, remotely, or with WALG_DISABLE_PARTIAL_RESTORE "
            "or --without-files-metadata; restore it whole",
        )
    return databases


def plan_exclusions(
    backup: str, files: FilesMetadata | None, keys: Sequence[str]
) -> frozenset[str]:
    """The files (relative to PGDATA) of ``backup`` that ``--restore-only keys`` leaves out;
    WalgError naming what is wrong (no DatabasesByNames, unknown names) otherwise."""
    databases = require_databases(backup, files.databases if files is not None else None)
    keep = resolve(databases, parse_restore_only(keys))
    names = (n.strip("/") for n in files.files) if files is not None else ()
    excluded = excluded_files(names, keep)
    _log.info(
        "partial restore",
        backup=backup,
        restored=sorted(k for k in keys),
        files_left_out=len(excluded),
    )
    return excluded


def skippable_parts(
    tar_file_sets: Mapping[str, Sequence[str]], excluded: frozenset[str]
) -> frozenset[str]:
    """Parts of a backup walg wrote whose files are all ``excluded``: not downloaded. The
    first part is always read: walg stores every directory and link there."""
    parts = sorted(tar_file_sets)
    return frozenset(
        part
        for part in parts[1:]
        if tar_file_sets[part]
        and all(member.strip("/") in excluded for member in tar_file_sets[part])
    )
