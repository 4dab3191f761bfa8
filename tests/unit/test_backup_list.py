"""``wal-g backup-list``: the output formats (golden strings) and the command end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from servers.logtext import untimed

from walg.backup.catalog import BackupInfo
from walg.backup.listing import NO_BACKUPS, render
from walg.cli import main
from walg.format import layout
from walg.format.meta import ExtendedMetadata, Sentinel
from walg.storage.file import FileStorage

FULL = "base_000000010000000000000002"
DELTA = "base_000000010000000000000005_D_000000010000000000000002"


def at(day: int, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, second, micro, tzinfo=UTC)


def full_sentinel() -> Sentinel:
    return Sentinel(
        start_lsn=0x2000028,
        finish_lsn=0x2000138,
        timeline=1,
        pg_version=150004,
        system_identifier=7311470011216977934,
        uncompressed_size=23456789,
        compressed_size=3456789,
        start_time=at(6, 7, 8, 9, 500000),
        finish_time=at(6, 7, 9, 10),
        hostname="db1",
        data_dir="/var/lib/postgresql/15/main",
    )


def delta_sentinel() -> Sentinel:
    return Sentinel(
        start_lsn=0x1_05000028,
        finish_lsn=0x1_05000100,
        timeline=1,
        pg_version=150004,
        uncompressed_size=1024,
        compressed_size=512,
        user_data={"team": "billing", "note": "après"},
        delta_from=FULL,
        delta_full_name=FULL,
        delta_count=1,
        delta_lsn=0x2000028,
        start_time=at(7, 1),
        finish_time=at(7, 1, 0, 30),
        hostname="db1",
        data_dir="/var/lib/postgresql/15/main",
    )


@pytest.fixture
def backups() -> list[BackupInfo]:
    """A full backup and a permanent delta on it, oldest first."""
    delta_meta = ExtendedMetadata.from_sentinel(delta_sentinel())
    permanent = ExtendedMetadata(**{**delta_meta.__dict__, "is_permanent": True})
    return [
        BackupInfo(FULL, full_sentinel(), at(6, 7, 9, 11)),
        BackupInfo(DELTA, delta_sentinel(), at(7, 1, 0, 31), permanent),
    ]


# -- formats --------------------------------------------------------------------------------

PLAIN = """\
backup_name                                              modified             wal_file_name            storage_name
base_000000010000000000000002                            2024-05-06T07:09:11Z 000000010000000000000002 default
base_000000010000000000000005_D_000000010000000000000002 2024-05-07T01:00:31Z 000000010000000000000005 default
"""  # noqa: E501 - a golden table is as wide as it is

PLAIN_DETAIL = """\
backup_name                                              modified             wal_file_name            storage_name start_time           finish_time          hostname data_dir                    pg_version start_lsn finish_lsn is_permanent uncompressed_size compressed_size delta_from                    user_data
base_000000010000000000000002                            2024-05-06T07:09:11Z 000000010000000000000002 default      2024-05-06T07:08:09Z 2024-05-06T07:09:10Z db1      /var/lib/postgresql/15/main 150004     0/2000028 0/2000138  false        23456789          3456789         -                             -
base_000000010000000000000005_D_000000010000000000000002 2024-05-07T01:00:31Z 000000010000000000000005 default      2024-05-07T01:00:00Z 2024-05-07T01:00:30Z db1      /var/lib/postgresql/15/main 150004     1/5000028 1/5000100  true         1024              512             base_000000010000000000000002 {"team":"billing","note":"après"}
"""  # noqa: E501

PRETTY = """\
+---+----------------------------------------------------------+----------------------+--------------------------+--------------+
| # | BACKUP NAME                                              | MODIFIED             | WAL FILE NAME            | STORAGE NAME |
+---+----------------------------------------------------------+----------------------+--------------------------+--------------+
| 0 | base_000000010000000000000002                            | 2024-05-06T07:09:11Z | 000000010000000000000002 | default      |
| 1 | base_000000010000000000000005_D_000000010000000000000002 | 2024-05-07T01:00:31Z | 000000010000000000000005 | default      |
+---+----------------------------------------------------------+----------------------+--------------------------+--------------+
"""  # noqa: E501

JSON = (
    '[{"backup_name":"base_000000010000000000000002","time":"2024-05-06T07:09:11Z",'
    '"wal_file_name":"000000010000000000000002","storage_name":"default"},'
    '{"backup_name":"base_000000010000000000000005_D_000000010000000000000002",'
    '"time":"2024-05-07T01:00:31Z","wal_file_name":"000000010000000000000005",'
    '"storage_name":"default"}]\n'
)

# The keys of WAL-G's BackupTime and ExtendedMetadataDto, in WAL-G's order.
WALG_KEYS = ["backup_name", "time", "wal_file_name", "storage_name"]
WALG_DETAIL_KEYS = [
    *WALG_KEYS,
    *("start_time", "finish_time", "date_fmt", "hostname", "data_dir", "pg_version"),
    *("start_lsn", "finish_lsn", "is_permanent", "system_identifier"),
    *("uncompressed_size", "compressed_size"),
]


def test_plain_table(backups: list[BackupInfo]) -> None:
    """The default output is WAL-G's tab-aligned table, oldest backup first."""
    assert render(backups) == PLAIN


def test_plain_detail_table(backups: list[BackupInfo]) -> None:
    """--detail adds times, host, dir, version, X/Y LSNs, permanence, sizes, base, user data."""
    assert render(backups, detail=True) == PLAIN_DETAIL


def test_pretty_table(backups: list[BackupInfo]) -> None:
    """--pretty draws a boxed table with a numbered column and a rule under the header."""
    assert render(backups, pretty=True) == PRETTY


def test_pretty_detail_table(backups: list[BackupInfo]) -> None:
    """--pretty --detail right-aligns numbers and shows sizes in binary units."""
    lines = render(backups, detail=True, pretty=True).splitlines()
    assert len(lines) == 6 and lines[0] == lines[2] == lines[5]
    assert set(lines[0]) == {"+", "-"}
    assert "| PG VERSION | START LSN | FINISH LSN | PERMANENT | UNCOMPRESSED SIZE |" in lines[1]
    assert "|     150004 | 0/2000028 | 0/2000138  | false     |          22.4 MiB |" in lines[3]
    assert "|           1.0 KiB |           512 B | base_000000010000000000000002 |" in lines[4]
    assert len({len(line) for line in lines}) == 1


def test_json(backups: list[BackupInfo]) -> None:
    """--json is one compact line: WAL-G's keys, "time" being the sentinel's mtime."""
    assert render(backups, as_json=True) == JSON
    assert [list(doc) for doc in json.loads(JSON)] == [WALG_KEYS, WALG_KEYS]


def test_json_detail(backups: list[BackupInfo]) -> None:
    """--json --detail has WAL-G's metadata keys with integer LSNs, plus the delta's base."""
    full, delta = json.loads(render(backups, as_json=True, detail=True))
    assert list(full)[: len(WALG_DETAIL_KEYS)] == WALG_DETAIL_KEYS
    assert "user_data" not in full  # omitted when empty, as WAL-G does
    assert full["start_time"] == "2024-05-06T07:08:09.5Z"
    assert full["date_fmt"] == "%Y-%m-%dT%H:%M:%S.%fZ"
    assert (full["start_lsn"], full["finish_lsn"]) == (0x2000028, 0x2000138)
    assert full["system_identifier"] == 7311470011216977934
    assert (full["delta_from"], full["delta_count"]) == (None, None)
    assert delta["is_permanent"] is True
    assert delta["user_data"] == {"team": "billing", "note": "après"}
    assert (delta["delta_from"], delta["delta_full_name"]) == (FULL, FULL)


def test_json_pretty_indents_by_four(backups: list[BackupInfo]) -> None:
    """--json --pretty is the same document indented by four spaces (Go's SetIndent)."""
    text = render(backups, as_json=True, pretty=True)
    assert text.startswith('[\n    {\n        "backup_name": "base_000000010000000000000002",\n')
    assert json.loads(text) == json.loads(JSON)


def test_unknown_values_print_as_dash() -> None:
    """A backup without recorded times, host or dir shows "-" (and null in JSON)."""
    old = Sentinel(start_lsn=0, finish_lsn=0, timeline=1, pg_version=0)
    backup = BackupInfo(FULL, old, at(1, 0))
    row = render([backup], detail=True).splitlines()[1].split()
    assert row[4:8] == ["-", "-", "-", "-"]
    [doc] = json.loads(render([backup], detail=True, as_json=True))
    assert doc["start_time"] is None and doc["finish_time"] is None


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("detail", [False, True])
def test_no_backups(detail: bool, pretty: bool) -> None:
    """Tables of no backups are empty; JSON of no backups is an empty array."""
    assert render([], detail=detail, pretty=pretty) == ""
    assert json.loads(render([], detail=detail, pretty=pretty, as_json=True)) == []


# -- the command ----------------------------------------------------------------------------


def put_backup(root: Path, name: str, sentinel: Sentinel, metadata: Any = None) -> None:
    storage = FileStorage(str(root))
    if metadata is not None:
        storage.put_object(layout.metadata_key(name), json.dumps(metadata).encode())
    storage.put_object(layout.sentinel_key(name), json.dumps(sentinel.to_json()).encode())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose storage is an empty folder."""
    (tmp_path / "storage").mkdir()
    return {"WALG_FILE_PREFIX": str(tmp_path / "storage")}


def test_command_lists_backups(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """backup-list prints the table on stdout, oldest first, and exits 0."""
    root = Path(env["WALG_FILE_PREFIX"])
    put_backup(root, DELTA, delta_sentinel())
    put_backup(root, FULL, full_sentinel())
    assert main(["backup-list"], environ=env) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["backup_name", "modified", "wal_file_name", "storage_name"]
    assert [line.split()[0] for line in lines[1:]] == [FULL, DELTA]
    assert err == ""


def test_command_detail_json_reads_metadata(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """backup-list --detail --json shows metadata.json's facts (e.g. a backup-mark)."""
    root = Path(env["WALG_FILE_PREFIX"])
    put_backup(root, FULL, full_sentinel(), metadata={"is_permanent": True, "hostname": "x"})
    assert main(["backup-list", "--detail", "--json"], environ=env) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert (doc["backup_name"], doc["is_permanent"], doc["hostname"]) == (FULL, True, "x")


@pytest.mark.parametrize(
    ("flags", "stdout"), [([], ""), (["--pretty"], ""), (["--json"], "[]\n"), (["--detail"], "")]
)
def test_command_without_backups(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], flags: list[str], stdout: str
) -> None:
    """An empty storage is not an error: "No backups found" as an INFO line on stderr (as
    WAL-G's InfoLogger writes it), exit 0, [] for JSON."""
    assert main(["backup-list", *flags], environ=env) == 0
    out, err = capsys.readouterr()
    assert out == stdout
    assert untimed(err) == f"INFO: {NO_BACKUPS}\n"


def test_command_skips_a_corrupt_sentinel(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt sentinel is warned about on stderr; the other backups are still listed."""
    root = Path(env["WALG_FILE_PREFIX"])
    put_backup(root, FULL, full_sentinel())
    FileStorage(str(root)).put_object(layout.sentinel_key(DELTA), b"{")
    assert main(["backup-list"], environ=env) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == ["backup_name", FULL]
    assert DELTA in err and err.startswith("WARNING: ")


def test_command_without_storage(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a storage setting backup-list exits 2 with the configuration hint."""
    assert main(["backup-list"], environ={}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    err = untimed(err)
    assert err.startswith("ERROR: no storage is configured: set one of WALG_FILE_PREFIX")
    assert "\nHINT: " in err and "Traceback" not in err
