"""What a base backup contains, and how it is cut into parts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from walg.format.scan import PG_CONTROL, Entry, is_excluded, plan_parts, scan


def make_pgdata(root: Path) -> Path:
    pgdata = root / "data"
    files = {
        "PG_VERSION": b"15\n",
        "global/pg_control": b"c" * 8192,
        "global/1262": b"g" * 8192,
        "base/1/1259": b"x" * 16384,
        "base/1/pg_internal.init": b"cache",
        "base/1/pgsql_tmp/pgsql_tmp123.0": b"tmp",
        "pg_wal/000000010000000000000001": b"w" * 100,
        "pg_wal/archive_status/000000010000000000000001.ready": b"",
        "pg_stat_tmp/global.stat": b"s",
        "pg_replslot/slot1/state": b"r",
        "postmaster.pid": b"123",
        "backup_label": b"old",
        "standby.signal": b"",
        "postgresql.conf": b"port = 5432\n",
        "log/postgresql.log": b"l",
    }
    for name, data in files.items():
        (pgdata / name).parent.mkdir(parents=True, exist_ok=True)
        (pgdata / name).write_bytes(data)
    (pgdata / "pg_tblspc").mkdir()
    return pgdata


def test_scan_applies_postgres_and_walg_exclusions(tmp_path: Path) -> None:
    """Runtime files are skipped; pg_wal and friends are kept as empty directories."""
    pgdata = make_pgdata(tmp_path)
    entries = {e.name: e for e in scan(str(pgdata))}
    assert {n for n, e in entries.items() if e.kind == "file"} == {
        "PG_VERSION", "global/pg_control", "global/1262", "base/1/1259", "postgresql.conf",
    }
    for kept_empty in ("pg_wal", "pg_stat_tmp", "pg_replslot", "log", "pg_tblspc"):
        assert entries[kept_empty].kind == "dir"
    assert not any(n.startswith(("pg_wal/", "pg_replslot/", "log/")) for n in entries)
    assert "base/1/pgsql_tmp" not in entries
    assert entries["base/1/1259"].size == 16384


def test_tablespaces_are_followed(tmp_path: Path) -> None:
    """A pg_tblspc symlink of a known tablespace is walked; its files are named under it."""
    pgdata = make_pgdata(tmp_path)
    location = tmp_path / "ts1"
    (location / "PG_15_202209061" / "16384").mkdir(parents=True)
    (location / "PG_15_202209061" / "16384" / "16390").write_bytes(b"t" * 8192)
    os.symlink(location, pgdata / "pg_tblspc" / "16400")
    entries = {e.name: e for e in scan(str(pgdata), {"16400": str(location)})}
    assert entries["pg_tblspc/16400"].kind == "dir"
    f = entries["pg_tblspc/16400/PG_15_202209061/16384/16390"]
    assert f.kind == "file" and f.path == str(location / "PG_15_202209061/16384/16390")


def test_other_symlinks_are_stored_as_symlinks(tmp_path: Path) -> None:
    """A symlink that is not a known tablespace is stored as a link, not followed."""
    pgdata = make_pgdata(tmp_path)
    os.symlink("/somewhere/else", pgdata / "conf_link")
    entries = {e.name: e for e in scan(str(pgdata))}
    assert entries["conf_link"].kind == "symlink"
    assert entries["conf_link"].target == "/somewhere/else"


def test_symlinked_pg_wal_is_stored_as_an_empty_directory(tmp_path: Path) -> None:
    """pg_wal linked elsewhere (initdb -X) is stored as an empty directory, never as a
    link, and the WAL directory it points to is not read."""
    pgdata = make_pgdata(tmp_path)
    wal = tmp_path / "wal_elsewhere"
    (pgdata / "pg_wal").rename(wal)
    os.symlink(wal, pgdata / "pg_wal")
    entries = {e.name: e for e in scan(str(pgdata))}
    assert entries["pg_wal"].kind == "dir" and entries["pg_wal"].mode == 0o700
    assert not [n for n in entries if n.startswith("pg_wal/")]


@pytest.mark.parametrize(
    ("name", "is_dir", "excluded"),
    [
        ("postmaster.pid", False, True),
        ("base/1/postmaster.pid", False, False),
        ("base/16384/pg_internal.init", False, True),
        ("base/pgsql_tmp", True, True),
        ("pg_wal", True, False),
        ("tablespace_map", False, True),
        ("global/pg_control", False, False),
    ],
)
def test_exclusion_rules(name: str, is_dir: bool, excluded: bool) -> None:
    """Exclusion is by name and place, as PostgreSQL's own base backup does it."""
    assert is_excluded(name, is_dir) is excluded


def f(name: str, size: int) -> Entry:
    return Entry(name, "/x/" + name, "file", size)


def test_parts_are_cut_at_the_threshold() -> None:
    """Files fill parts in order up to the threshold; a big file gets a part to itself."""
    entries = [Entry("base", "/x/base", "dir"), f("a", 40), f("b", 50), f("c", 30),
               f("big", 500), f("d", 10), f(PG_CONTROL, 8192)]
    parts = plan_parts(entries, threshold=100)
    assert [[e.name for e in p.entries] for p in parts] == [
        ["base", "a", "b"], ["c"], ["big"], ["d"],
    ]
    assert [p.number for p in parts] == [1, 2, 3, 4]
    assert parts[2].size == 500


def test_empty_backup_has_one_part_of_directories() -> None:
    """A data directory of only directories still yields one part."""
    parts = plan_parts([Entry("base", "/x/base", "dir")], threshold=100)
    assert len(parts) == 1 and parts[0].entries[0].name == "base"
