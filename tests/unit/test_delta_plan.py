"""Planning delta backups: the base chosen, what each file becomes, and which backup of a
chain each restored file comes from (pure functions, no storage)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walg.backup.catalog import BackupInfo
from walg.backup.delta import (
    MTIME_MARGIN,
    Action,
    check_base,
    choose_base,
    file_action,
)
from walg.errors import BackupNotFound, DeltaBaseError, IntegrityError
from walg.format.chain import Selection, parts_needed, plan_restore
from walg.format.meta import FileDescription, FilesMetadata, Sentinel
from walg.format.scan import Entry, is_paged_file
from walg.postgres.wal import parse_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def backup(name: str, hour: int, base: BackupInfo | None = None, **extra: Any) -> BackupInfo:
    fields: dict[str, Any] = {
        "start_lsn": 0x1000000 * (hour + 1),
        "finish_lsn": 0x1000000 * (hour + 1) + 0x100,
        "timeline": 1,
        "pg_version": 150000,
        "system_identifier": 7,
        "start_time": T0 + timedelta(hours=hour),
        **extra,
    }
    if base is not None:
        full = base.sentinel.delta_full_name if base.is_delta else base.name
        fields.update(
            delta_from=base.name,
            delta_full_name=full,
            delta_count=(base.sentinel.delta_count or 0) + 1,
            delta_lsn=base.sentinel.start_lsn,
        )
    return BackupInfo(name, Sentinel(**fields), T0)


def chain_of(length: int) -> list[BackupInfo]:
    backups = [backup("full", 0)]
    for i in range(1, length):
        backups.append(backup(f"d{i}", i, backups[-1]))
    return backups


# -- choosing the base ------------------------------------------------------------------------


def test_no_steps_or_no_backups_or_full_flag_means_full() -> None:
    assert choose_base(chain_of(1), max_steps=0, origin="LATEST") is None
    assert choose_base([], max_steps=3, origin="LATEST") is None
    assert choose_base(chain_of(1), max_steps=3, origin="LATEST", full=True) is None


@pytest.mark.parametrize(
    ("length", "max_steps", "expected"),
    [(1, 1, ("full", 1)), (2, 1, None), (2, 3, ("d1", 2)), (3, 3, ("d2", 3)), (4, 3, None)],
)
def test_latest_origin_chains_on_the_newest_until_max_steps(
    length: int, max_steps: int, expected: tuple[str, int] | None
) -> None:
    base = choose_base(chain_of(length), max_steps=max_steps, origin="LATEST")
    assert (base and (base.name, base.count)) == expected
    if base is not None:
        assert base.full_name == "full"


def test_latest_full_origin_bases_on_the_full_and_counts_its_deltas() -> None:
    full = backup("full", 0)
    one = backup("one", 1, full)
    assert (choose_base([full], max_steps=2, origin="LATEST_FULL") or None).name == "full"  # type: ignore[union-attr]
    chosen = choose_base([full, one], max_steps=2, origin="LATEST_FULL")
    assert chosen is not None and (chosen.name, chosen.count, chosen.full_name) == (
        "full",
        1,
        "full",
    )
    two = backup("two", 2, full)
    assert choose_base([full, one, two], max_steps=2, origin="LATEST_FULL") is None


def test_order_is_by_start_time_not_name() -> None:
    """The newest backup is the last of the list (start time order), whatever its name."""
    older = backup("base_00000002000000000000000A", 0)
    newer = backup("base_000000010000000000000009", 5)
    base = choose_base([older, newer], max_steps=1, origin="LATEST")
    assert base is not None and base.name == newer.name


def test_delta_from_name_picks_that_backup_whatever_the_steps() -> None:
    backups = chain_of(3)
    base = choose_base(backups, max_steps=0, origin="LATEST", from_name="d1")
    assert base is not None and (base.name, base.count, base.full_name) == ("d1", 2, "full")
    with pytest.raises(BackupNotFound, match="nope"):
        choose_base(backups, max_steps=0, origin="LATEST", from_name="nope")


def test_check_base_refuses_another_cluster_or_a_base_ahead() -> None:
    base = choose_base(chain_of(1), max_steps=1, origin="LATEST")
    assert base is not None
    check_base(base, 7, base.backup.sentinel.finish_lsn)  # fine
    with pytest.raises(DeltaBaseError, match="another cluster"):
        check_base(base, 8, base.backup.sentinel.finish_lsn)
    # WAL-G's words for it ("Finish LSN of backup X greater than current LSN"), which its
    # delta_backup_fullscan script greps for, then the likely cause
    with pytest.raises(DeltaBaseError, match=r"finish LSN is greater than current LSN .*restored"):
        check_base(base, 7, base.backup.sentinel.finish_lsn - 1)
    # both: another cluster whose backup also ends ahead (WAL-G's delta_backup_fullscan case)
    with pytest.raises(DeltaBaseError, match=r"another cluster.*also greater than current LSN"):
        check_base(base, 8, base.backup.sentinel.finish_lsn - 1)
    with pytest.raises(DeltaBaseError) as only_cluster:
        check_base(base, 8, base.backup.sentinel.finish_lsn)
    assert "current LSN" not in only_cluster.value.msg


# -- what each file becomes -------------------------------------------------------------------


def entry(name: str, size: int = 16384, mtime: float = 0.0) -> Entry:
    return Entry(name, "/x/" + name, "file", size, mtime)


OLD = T0 - timedelta(days=1)


@pytest.mark.parametrize(
    ("name", "size", "paged"),
    [
        ("base/5/16384", 8192, True),
        ("base/5/16384.1", 16384, True),
        ("pg_tblspc/16385/PG_15_202209061/5/16390", 8192, True),
        ("base/5/16384_fsm", 24576, False),
        ("base/5/16384_vm", 8192, False),
        ("base/5/16384", 100, False),
        ("base/5/16384", 0, False),
        ("global/1262", 8192, False),
        ("pg_xact/0000", 8192, False),
        ("base/5/pg_filenode.map", 8192, False),
    ],
)
def test_paged_files(name: str, size: int, paged: bool) -> None:
    assert is_paged_file(name, size) is paged


def test_file_actions() -> None:
    recorded = {
        "/base/5/16384": FileDescription(OLD),
        "/base/5/16384_vm": FileDescription(OLD),
        "/global/pg_control": FileDescription(OLD),
        "/base/5/recent": FileDescription(T0 - MTIME_MARGIN / 2),
    }
    old = OLD.timestamp()
    assert file_action(entry("base/5/new"), recorded, T0) is Action.WHOLE
    assert file_action(entry("base/5/16384", mtime=old), recorded, T0) is Action.SKIP
    assert file_action(entry("base/5/16384", mtime=old + 1), recorded, T0) is Action.INCREMENT
    assert file_action(entry("base/5/16384_vm", mtime=old + 1), recorded, T0) is Action.WHOLE
    assert file_action(entry("global/pg_control", mtime=old), recorded, T0) is Action.WHOLE
    # Unchanged, but written too close to the base's start to trust the file time.
    near = (T0 - MTIME_MARGIN / 2).timestamp()
    assert file_action(entry("base/5/recent", size=100, mtime=near), recorded, T0) is Action.WHOLE
    # Without the base's start time nothing is skipped.
    assert file_action(entry("base/5/16384", mtime=old), recorded, None) is Action.INCREMENT


# -- restoring a chain ------------------------------------------------------------------------


WHOLE, INC, SKIP = (
    FileDescription(T0),
    FileDescription(T0, is_incremented=True),
    FileDescription(T0, is_skipped=True),
)


def meta(
    files: dict[str, FileDescription], sets: dict[str, list[str]] | None = None
) -> FilesMetadata:
    return FilesMetadata({"/" + k: v for k, v in files.items()}, sets or {})


def test_plan_restore_takes_each_file_from_its_newest_whole_copy() -> None:
    chain = [
        ("full", meta({"a": WHOLE, "b": WHOLE, "c": WHOLE, "dropped": WHOLE})),
        ("d1", meta({"a": INC, "b": SKIP, "c": WHOLE, "new": WHOLE})),
        ("d2", meta({"a": INC, "b": SKIP, "c": SKIP, "new": INC})),
    ]
    full, d1, d2 = plan_restore(chain)
    assert (full.whole, full.increments, full.everything) == ({"a", "b"}, set(), False)
    assert (d1.whole, d1.increments) == ({"c", "new"}, {"a"})
    assert d2.everything and d2.increments == {"a", "new"}
    assert not full.wants("dropped") and not full.wants("c") and full.wants("b")


def test_plan_restore_of_a_full_backup_takes_everything() -> None:
    (only,) = plan_restore([("full", meta({"a": WHOLE}))])
    assert only == Selection("full", frozenset({"a"}), frozenset(), everything=True)


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ([("full", meta({"a": WHOLE})), ("d1", meta({"b": SKIP}))], "b is missing from full"),
        ([("full", meta({"a": INC})), ("d1", meta({"a": INC}))], "stores a whole"),
        ([("d0", meta({"a": SKIP}))], "stores a whole"),
    ],
)
def test_broken_chains_fail_before_anything_is_written(
    chain: list[tuple[str, FilesMetadata]], message: str
) -> None:
    with pytest.raises(IntegrityError, match=message):
        plan_restore(chain)


@given(
    st.lists(
        st.dictionaries(st.sampled_from("abcdef"), st.sampled_from("WIS")), min_size=1, max_size=5
    )
)
def test_plan_restore_matches_replaying_the_chain(states: list[dict[str, str]]) -> None:
    """Property: replaying the selections (whole copies replace, increments append,
    files outside the selection untouched) gives, for every file of the last backup,
    the same history as walking the chain; broken chains are refused."""
    states[0] = {k: "W" for k in states[0]}  # a full backup stores everything whole
    chain = [
        (f"b{i}", meta({k: {"W": WHOLE, "I": INC, "S": SKIP}[v] for k, v in files.items()}))
        for i, files in enumerate(states)
    ]

    def history(name: str) -> list[int] | None:
        """Indexes of the backups whose copies make up ``name``, oldest first."""
        used: list[int] = []
        for index in range(len(states) - 1, -1, -1):
            kind = states[index].get(name)
            if kind is None:
                return None
            if kind != "S":
                used.append(index)
            if kind == "W":
                return used[::-1]
        return None

    expected = {name: history(name) for name in states[-1]}
    if any(h is None for h in expected.values()):
        with pytest.raises(IntegrityError):
            plan_restore(chain)
        return
    replayed: dict[str, list[int]] = {}
    for index, selection in enumerate(plan_restore(chain)):
        for name, kind in states[index].items():
            if not selection.wants(name) or kind == "S":
                continue
            replayed[name] = [index] if kind == "W" else [*replayed[name], index]
    assert replayed == expected


def test_parts_needed_downloads_only_parts_holding_selected_files() -> None:
    sets = {"part_001.tar.lz4": ["/a", "/b"], "part_002.tar.lz4": ["/c"]}
    assert parts_needed(Selection("x", frozenset({"b"})), sets) == {"part_001.tar.lz4"}
    assert parts_needed(Selection("x", increments=frozenset({"c"})), sets) == {"part_002.tar.lz4"}
    assert parts_needed(Selection("x"), sets) == set()
    assert parts_needed(Selection("x", everything=True), sets) is None
    assert parts_needed(Selection("x", frozenset({"b"})), {}) is None


# -- timelines --------------------------------------------------------------------------------


def test_parse_history() -> None:
    text = "1\t0/3000000\tno recovery target specified\n\n# comment\n2\t0/5000A28\tbefore 2026\n"
    assert parse_history(text) == {1: 0x3000000, 2: 0x5000A28}
    with pytest.raises(ValueError, match="malformed"):
        parse_history("x 0/1 y\n")


def test_base_on_an_older_timeline_is_fine_if_left_after_it_finished() -> None:
    base = choose_base([backup("full", 0)], max_steps=1, origin="LATEST")  # finishes at 0x1000100
    assert base is not None
    later = 0x9000000
    check_base(base, 7, later, timeline=2, history={1: 0x1000100})
    with pytest.raises(DeltaBaseError, match="left it at 0/1000000, before the base finished"):
        check_base(base, 7, later, timeline=2, history={1: 0x1000000})
    with pytest.raises(DeltaBaseError, match="does not descend"):
        check_base(base, 7, later, timeline=3, history={2: 0x2000000})


def test_chain_root_without_delta_full_name_is_found_through_delta_from() -> None:
    """Old sentinels may lack DeltaFullName: the full backup is found by walking DeltaFrom."""
    full = backup("full", 0)
    one = backup("one", 1, full)
    old_style = dataclasses.replace(one.sentinel, delta_full_name=None)
    two = backup("two", 2, BackupInfo("one", old_style, T0))
    two = BackupInfo("two", dataclasses.replace(two.sentinel, delta_full_name=None), T0)
    chain = [full, BackupInfo("one", old_style, T0), two]
    base = choose_base(chain, max_steps=5, origin="LATEST")
    assert base is not None and (base.name, base.full_name) == ("two", "full")
    root = choose_base(chain, max_steps=5, origin="LATEST_FULL")
    assert root is not None and root.name == "full"
