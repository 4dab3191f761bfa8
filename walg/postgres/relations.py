"""The cluster's databases and each database's relations, as WAL-G records them for partial
restore (the queries of its GetDatabaseInfos and getTables; the JSON shape is in
walg.format.meta).

- Databases: ``pg_database`` rows that allow connections (template0 does not: it is
  restored whole anyway, its OID being below 16384).
- Relations: every ``pg_class`` row with storage, by ``namespace.relname``; a mapped
  catalog (relfilenode 0) gets the number of its file from ``pg_relation_filepath``,
  asked for those rows only (cheap on millions of relations, as WAL-G does); partitioned
  tables (relkind 'p', no storage) are kept because their partitions hang below them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walg.postgres.connection import PgConnection

__all__ = ["DatabaseRow", "RelationRow", "databases", "relations"]

_DATABASES = (
    "SELECT oid, datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY oid"
)
_RELATIONS = (
    "SELECT c.relfilenode, c.oid,"
    " CASE WHEN c.relfilenode = 0 THEN pg_catalog.pg_relation_filepath(c.oid) END,"
    " c.relname, n.nspname, c.relkind, parent.relname"
    " FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid"
    " LEFT JOIN pg_catalog.pg_inherits i ON c.oid = i.inhrelid"
    " LEFT JOIN pg_catalog.pg_class parent ON i.inhparent = parent.oid"
)


@dataclass(frozen=True, slots=True)
class DatabaseRow:
    oid: int
    name: str


@dataclass(frozen=True, slots=True)
class RelationRow:
    """A relation with a file (or a partitioned table): ``parent`` is the name of the table
    it inherits from or partitions, in the same namespace as WAL-G assumes ("" if none)."""

    relfilenode: int
    oid: int
    name: str
    namespace: str
    parent: str


def databases(pg: PgConnection) -> list[DatabaseRow]:
    """The databases that accept connections, in OID order."""
    rows = pg.query(_DATABASES, what="listing databases")
    return [DatabaseRow(int(oid), str(name)) for oid, name in rows]


def relations(pg: PgConnection) -> list[RelationRow]:
    """The relations of the database ``pg`` is connected to (see the module docstring)."""
    found = []
    for node, oid, path, name, namespace, kind, parent in pg.query(
        _RELATIONS, what="listing relations"
    ):
        relfilenode = int(node or 0)
        if kind != "p" and relfilenode == 0:
            if not path:
                continue  # no storage: views, foreign tables, partitioned indexes
            tail = str(path).rsplit("/", 1)[-1]
            if not tail.isdigit():
                continue
            relfilenode = int(tail)
        found.append(RelationRow(relfilenode, int(oid), str(name), str(namespace), parent or ""))
    return found
