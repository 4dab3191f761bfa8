"""DatabasesByNames in files_metadata.json (WAL-G's shape) and --restore-only's rules."""

from __future__ import annotations

import json

import pytest

from walg.backup import completeness
from walg.backup.partial import (
    build_tables,
    excluded_files,
    parse_restore_only,
    plan_exclusions,
    resolve,
    skippable_parts,
)
from walg.errors import IntegrityError, WalgError
from walg.format.chain import Selection
from walg.format.meta import DatabaseObjects, FileDescription, FilesMetadata, RelationInfo
from walg.format.meta import parse_time as _t
from walg.postgres.relations import RelationRow

# Written from WAL-G's struct tags (names_metadata.go, backup_sentinel_dto.go):
# FilesMetadataDto.DatabasesByNames `json:"DatabasesByNames,omitempty"`, a map of name ->
# DatabaseObjectsInfo{Oid `json:"oid"`, Tables `json:"tables_new,omitempty"`}, Tables a map of
# name -> TableInfo{Oid `json:"oid"`, Relfilenode `json:"relfilenode"`,
# SubTables `json:"subtables,omitempty"`}.
WALG_SAMPLE = json.loads("""
{
  "Files": {},
  "TarFileSets": {},
  "DatabasesByNames": {
    "db1": {"oid": 16384, "tables_new": {
      "pg_catalog.pg_class": {"oid": 1259, "relfilenode": 1259},
      "public.measurements": {"oid": 16390, "relfilenode": 0, "subtables": {
        "public.m_2024": {"oid": 16393, "relfilenode": 16393}}},
      "public.t": {"oid": 16385, "relfilenode": 16385}}},
    "empty": {"oid": 16400}
  }
}
""")


def _db1() -> DatabaseObjects:
    return DatabaseObjects(
        16384,
        {
            "pg_catalog.pg_class": RelationInfo(1259, 1259),
            "public.measurements": RelationInfo(
                16390, 0, {"public.m_2024": RelationInfo(16393, 16393)}
            ),
            "public.t": RelationInfo(16385, 16385),
        },
    )


def test_shape_matches_wal_g_struct_tags() -> None:
    """DatabasesByNames is written with WAL-G's keys, nesting and types; empty maps left out."""
    meta = FilesMetadata({}, {}, {"db1": _db1(), "empty": DatabaseObjects(16400)})
    assert meta.to_json() == WALG_SAMPLE


def test_read_back_and_absent_when_not_recorded() -> None:
    """WAL-G's document reads into the same objects; a backup without it has None and
    writes no DatabasesByNames key."""
    meta = FilesMetadata.from_json(WALG_SAMPLE)
    assert meta.databases == {"db1": _db1(), "empty": DatabaseObjects(16400)}
    assert "DatabasesByNames" not in FilesMetadata().to_json()
    assert FilesMetadata.from_json({"Files": {}}).databases is None


def test_build_tables_like_wal_g_get_tables() -> None:
    """Top tables by namespace.name; partitions (any depth) flattened under their top one."""
    rows = [
        RelationRow(16390, 16390, "parent", "public", ""),
        RelationRow(16393, 16393, "p1", "public", "parent"),
        RelationRow(16396, 16396, "p1a", "public", "p1"),
        RelationRow(1259, 1259, "pg_class", "pg_catalog", ""),
    ]
    tables = build_tables(rows)
    assert set(tables) == {"public.parent", "pg_catalog.pg_class"}
    assert tables["public.parent"] == RelationInfo(
        16390,
        16390,
        {"public.p1": RelationInfo(16393, 16393), "public.p1a": RelationInfo(16396, 16396)},
    )


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (["a,b"], ["a", "b"]),
        (['my_db,"another db"'], ["my_db", "another db"]),
        (["a", "b/t"], ["a", "b/t"]),
        (['"x,y",z'], ["x,y", "z"]),
    ],
)
def test_parse_restore_only_reads_csv_like_cobra(values: list[str], names: list[str]) -> None:
    """Comma-separated, double quotes for names with commas or spaces, repeatable."""
    assert parse_restore_only(values) == names


def test_parse_restore_only_refuses_nothing() -> None:
    """An empty --restore-only is an error, not a restore of nothing."""
    with pytest.raises(WalgError, match="at least one"):
        parse_restore_only([""])


DBS = {
    "db1": _db1(),
    "db2": DatabaseObjects(
        16500,
        {"pg_catalog.pg_class": RelationInfo(1259, 1259), "public.t": RelationInfo(16501, 16601)},
    ),
}


def test_resolve_whole_database_and_catalogs_of_others() -> None:
    """A database named is restored whole; the others keep only their catalogs' files."""
    keep = resolve(DBS, ["db1"])
    assert keep == {16384: None, 16500: frozenset({1259})}


def test_resolve_table_brings_subtables_and_wildcards() -> None:
    """db/table (public by default) restores the table and its partitions; '*' matches."""
    keep = resolve(DBS, ["db1/measurements"])
    assert keep[16384] == frozenset({1259, 0, 16393})
    assert resolve(DBS, ["db*"]) == {16384: None, 16500: None}
    assert resolve(DBS, ["db2/public/t"])[16500] == frozenset({1259, 16601})


def test_resolve_names_every_unknown_database_or_table() -> None:
    """Unknown names are one error naming all of them and the backup's databases."""
    with pytest.raises(WalgError) as caught:
        resolve(DBS, ["db1", "nope", "db2/missing"])
    assert "'nope'" in caught.value.msg and "'db2/missing'" in caught.value.msg
    assert "db1, db2" in (caught.value.hint or "")
    assert caught.value.exit_code != 2
    with pytest.raises(WalgError, match="expected"):
        resolve(DBS, ["a/b/c/d"])


def test_excluded_files_follow_wal_g_rules() -> None:
    """Only relation files of user databases not selected are left out."""
    keep = resolve(DBS, ["db1"])
    names = [
        "global/1262",
        "base/1/1259",
        "base/5/16999",
        "base/16384/16385",
        "base/16500/1259",
        "base/16500/PG_VERSION",
        "base/16500/pg_filenode.map",
        "base/16500/16601",
        "base/16500/16601_fsm",
        "base/16500/16601.1",
        "pg_tblspc/17000/PG_15_202209061/16500/16601",
        "base/16700/16701",  # a database DatabasesByNames does not know: left out (WAL-G)
    ]
    assert excluded_files(names, keep) == {
        "base/16500/16601",
        "base/16500/16601_fsm",
        "base/16500/16601.1",
        "pg_tblspc/17000/PG_15_202209061/16500/16601",
        "base/16700/16701",
    }


def _files(names: list[str], dbs: dict[str, DatabaseObjects] | None) -> FilesMetadata:
    desc = FileDescription(_t("2024-01-01T00:00:00Z"))
    return FilesMetadata({"/" + n: desc for n in names}, {}, dbs)


def test_backup_without_databases_is_a_clear_error() -> None:
    """An older backup (no DatabasesByNames) cannot be restored partially: say so."""
    with pytest.raises(IntegrityError, match="no DatabasesByNames"):
        plan_exclusions("base_X", _files(["base/16500/16601"], None), ["db1"])


def test_completeness_ignores_what_was_left_out() -> None:
    """Files left out on purpose are not expected; the others still are."""
    files = _files(["base/16384/16385", "base/16500/16601", "global/1262"], DBS)
    excluded = plan_exclusions("base_X", files, ["db1"])
    selection = Selection("base_X", everything=True, excluded=excluded)
    expected = completeness.expected_files(files, selection)
    assert expected == {"base/16384/16385", "global/1262"}
    completeness.check_written("base_X", expected, expected)
    with pytest.raises(IntegrityError):
        completeness.check_written("base_X", expected, {"global/1262"})


def test_skippable_parts_keep_the_first_part() -> None:
    """Parts holding only left-out files are not read, except the first (directories)."""
    sets = {
        "part_001.tar.lz4": ["/base/16500/16601"],
        "part_002.tar.lz4": ["/base/16500/16602"],
        "part_003.tar.lz4": ["/base/16500/16603", "/global/1262"],
    }
    excluded = frozenset({"base/16500/16601", "base/16500/16602", "base/16500/16603"})
    assert skippable_parts(sets, excluded) == {"part_002.tar.lz4"}
