"""Backup names and JSON documents: WAL-G's shapes in and out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walg.errors import IntegrityError
from walg.format import layout
from walg.format.meta import (
    ExtendedMetadata,
    FileDescription,
    FilesMetadata,
    Sentinel,
    TablespaceSpec,
    format_time,
    parse_time,
)

# The shape WAL-G writes (BackupSentinelDtoV2), with values of a real-looking delta backup.
WALG_SENTINEL = {
    "LSN": 50331688,
    "Timeline": 1,
    "DeltaLSN": 33554472,
    "DeltaFrom": "base_000000010000000000000002",
    "DeltaFullName": "base_000000010000000000000002",
    "DeltaCount": 1,
    "PgVersion": 150018,
    "FinishLSN": 50332000,
    "SystemIdentifier": 7311470011216977934,
    "UncompressedSize": 23456789,
    "CompressedSize": 3456789,
    "DataCatalogSize": 23000000,
    "Spec": {
        "base_prefix": "/var/lib/postgresql/15/main",
        "tablespaces": ["16385"],
        "16385": {"loc": "/mnt/fast/ts1", "link": "pg_tblspc/16385"},
    },
    "UserData": {"team": "billing"},
    "Version": 2,
    "StartTime": "2024-05-06T07:08:09.123456789Z",
    "FinishTime": "2024-05-06T07:09:10.5Z",
    "DateFmt": "%Y-%m-%dT%H:%M:%S.%fZ",
    "Hostname": "db1",
    "DataDir": "/var/lib/postgresql/15/main",
    "IsPermanent": False,
}


def test_backup_names() -> None:
    """Backup names are base_<WAL> or base_<WAL>_D_<WAL>; anything else is refused."""
    assert layout.backup_name("000000010000000000000003") == "base_000000010000000000000003"
    delta = layout.backup_name("000000010000000000000005", "000000010000000000000003")
    assert delta == "base_000000010000000000000005_D_000000010000000000000003"
    assert layout.is_backup_name(delta)
    with pytest.raises(ValueError):
        layout.backup_name("xyz")


def test_object_keys() -> None:
    """Keys follow WAL-G's layout under basebackups_005/."""
    name = "base_000000010000000000000003"
    assert layout.sentinel_key(name) == f"basebackups_005/{name}_backup_stop_sentinel.json"
    assert layout.name_from_sentinel_key(layout.sentinel_key(name)) == name
    assert layout.name_from_sentinel_key(f"basebackups_005/{name}/metadata.json") is None
    assert layout.part_key(name, layout.part_name(7, "lz4")) == (
        f"basebackups_005/{name}/tar_partitions/part_007.tar.lz4"
    )
    assert layout.part_name(1234, "") == "part_1234.tar"


def test_walg_sentinel_is_read() -> None:
    """A sentinel as WAL-G writes it parses, nanosecond times and tablespaces included."""
    s = Sentinel.from_json(WALG_SENTINEL)
    assert (s.start_lsn, s.finish_lsn, s.timeline, s.pg_version) == (50331688, 50332000, 1, 150018)
    assert s.is_delta and s.delta_count == 1 and s.delta_lsn == 33554472
    assert s.spec == TablespaceSpec("/var/lib/postgresql/15/main", {"16385": "/mnt/fast/ts1"})
    assert s.start_time == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert s.user_data == {"team": "billing"}


def test_sentinel_round_trip_keeps_walg_keys() -> None:
    """Writing what we read gives back every WAL-G key with the same value."""
    doc = Sentinel.from_json(WALG_SENTINEL).to_json()
    for key, value in WALG_SENTINEL.items():
        if key not in ("StartTime", "FinishTime"):
            assert doc[key] == value, key
    assert parse_time(doc["StartTime"]) == parse_time(WALG_SENTINEL["StartTime"])


def test_old_walg_sentinel_without_v2_fields() -> None:
    """An older sentinel (no times, DeltaFromLSN spelling) still parses."""
    s = Sentinel.from_json({"LSN": 10, "FinishLSN": 20, "PgVersion": 90600, "DeltaFromLSN": 5,
                            "DeltaFrom": "base_x", "DeltaFullName": "base_x", "DeltaCount": 1})
    assert s.start_time is None and s.delta_lsn == 5 and s.timeline == 1


def test_malformed_sentinel_is_an_integrity_error() -> None:
    """A sentinel without LSNs is reported as malformed, naming where it came from."""
    with pytest.raises(IntegrityError, match="malformed basebackups_005/x"):
        Sentinel.from_json({"PgVersion": 1}, where="basebackups_005/x")


def test_metadata_json_shape() -> None:
    """metadata.json carries WAL-G's snake_case keys."""
    meta = ExtendedMetadata.from_sentinel(Sentinel.from_json(WALG_SENTINEL)).to_json()
    assert meta["start_lsn"] == 50331688 and meta["hostname"] == "db1"
    assert meta["date_fmt"] == "%Y-%m-%dT%H:%M:%S.%fZ" and meta["user_data"] == {"team": "billing"}


def test_files_metadata_round_trip() -> None:
    """Per-file descriptions keep WAL-G's keys and add ours; unknown keys are ignored."""
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    fm = FilesMetadata(
        {"/base/1/1259": FileDescription(when, size=8192, crc32c="0a1b2c3d")},
        {"part_001.tar.lz4": ["/base/1/1259"]},
    )
    doc = fm.to_json()
    assert doc["Files"]["/base/1/1259"] == {
        "IsIncremented": False, "IsSkipped": False, "MTime": "2024-01-02T03:04:05.000000Z",
        "WalgSize": 8192, "WalgCrc32c": "0a1b2c3d",
    }
    doc["Files"]["/base/1/1259"]["UpdatesCount"] = 3
    assert FilesMetadata.from_json(doc) == fm


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC)))
def test_time_round_trip(value: datetime) -> None:
    """format_time/parse_time round-trip to the microsecond."""
    assert parse_time(format_time(value)) == value


@pytest.mark.parametrize("text", ["2024-05-06T07:08:09+02:00", "2024-05-06T05:08:09.000000001Z"])
def test_time_zones_and_nanoseconds(text: str) -> None:
    """Offsets are converted to UTC and nanoseconds are truncated to microseconds."""
    assert parse_time(text) == datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)
