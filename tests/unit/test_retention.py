"""Retention planning (pure): which backups, unfinished folders and WAL each delete mode
removes, and the safety rules that hold whatever the mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walg.backup.retention import (
    GRACE,
    BackupRef,
    Inventory,
    Plan,
    classify_wal_key,
    plan_before,
    plan_everything,
    plan_garbage,
    plan_retain,
    plan_target,
    wal_position,
)
from walg.errors import BackupNotFound, NoBackupsFound, RetentionError
from walg.format.layout import backup_name
from walg.postgres.wal import WalFileKind, segment_name

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ref(
    seg: int,
    hour: float,
    *,
    tl: int = 1,
    base: BackupRef | None = None,
    permanent: bool = False,
    finish: int | None = None,
) -> BackupRef:
    """A backup starting in segment ``seg`` of timeline ``tl`` at hour ``hour``."""
    start = segment_name(tl, seg)
    name = backup_name(start, base.start_wal if base else None)
    full = None
    if base is not None:
        full = base.delta_full_name or base.name
    return BackupRef(
        name=name,
        start_time=T0 + timedelta(hours=hour),
        start_wal=start,
        finish_wal=segment_name(tl, seg if finish is None else finish),
        delta_from=base.name if base else None,
        delta_full_name=full,
        permanent=permanent,
    )


def wal(tl: int, segs: range | list[int], ext: str = ".lz4") -> list[str]:
    return [f"wal_005/{segment_name(tl, s)}{ext}" for s in segs]


def inv(backups: list[BackupRef], wal_keys: list[str] | None = None, **extra: object) -> Inventory:
    return Inventory(backups=backups, wal_keys=wal_keys or [], now=NOW, **extra)  # type: ignore[arg-type]


def deleted(plan: Plan) -> list[str]:
    return [d.name for d in plan.delete]


def kept(plan: Plan) -> set[str]:
    return {d.name for d in plan.keep}


# -- WAL names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("wal_005/000000010000000000000002.lz4", ("000000010000000000000002", "segment")),
        ("wal_005/000000010000000000000002", ("000000010000000000000002", "segment")),
        ("wal_005/000000010000000000000002.zst", ("000000010000000000000002", "segment")),
        ("wal_005/00000002.history.lz4", ("00000002.history", "history")),
        ("wal_005/00000002.history", ("00000002.history", "history")),
        (
            "wal_005/000000010000000000000002.00000028.backup.br",
            ("000000010000000000000002.00000028.backup", "backup"),
        ),
        (
            "wal_005/000000010000000000000002.partial.lzma",
            ("000000010000000000000002.partial", "partial"),
        ),
        ("wal_005/000000010000000000000002.lz4.unknown", None),
        ("wal_005/notes.txt", None),
        ("wal_005/sub/000000010000000000000002.lz4", None),
        ("basebackups_005/000000010000000000000002.lz4", None),
    ],
)
def test_classify_wal_key(key: str, expected: tuple[str, str] | None) -> None:
    """WAL keys are recognised with any compression extension; other objects are not."""
    found = classify_wal_key(key)
    assert (None if found is None else (found[0], found[1].value)) == expected


def test_wal_position_orders_by_segment_not_name() -> None:
    """Timeline digits do not order segments; log boundaries and big seg parts do."""
    assert wal_position("000000020000000000000005") < wal_position("000000010000000000000009")
    assert wal_position("0000000100000000000000FF") < wal_position("000000010000000100000000")
    # 1 MiB segments have seg parts up to 0xFFF: still ordered, still parseable
    assert wal_position("000000010000000000000FFF") < wal_position("000000010000000100000000")
    assert wal_position("000000010000000000000002.00000028.backup") == wal_position(
        "000000010000000000000002"
    )


# -- retain ---------------------------------------------------------------------------------


def test_retain_keeps_newest_and_deletes_older_with_their_wal() -> None:
    """retain 2 of 4 fulls deletes the 2 oldest (newest first) and the WAL below the
    2nd newest's start; .history files and later WAL stay."""
    a, b, c, d = ref(2, 0), ref(10, 1), ref(20, 2), ref(30, 3)
    keys = [*wal(1, range(1, 35)), "wal_005/00000002.history.lz4"]
    plan = plan_retain(inv([d, b, a, c], keys), 2)
    assert deleted(plan) == [b.name, a.name]
    assert kept(plan) == {c.name, d.name}
    assert plan.wal == tuple(wal(1, range(1, 20)))
    assert plan.wal_horizon == c.start_wal


def test_retain_when_nth_is_a_delta_fails_and_suggests_find_full() -> None:
    """Plain retain N refuses when the N-th newest is a delta (its bases would go)."""
    a = ref(2, 0)
    b = ref(10, 1, base=a)
    c = ref(20, 2, base=b)
    with pytest.raises(RetentionError) as caught:
        plan_retain(inv([a, b, c]), 2)
    assert b.name in caught.value.msg and "delta" in caught.value.msg
    assert "retain FIND_FULL 2" in caught.value.hint


def test_retain_find_full_keeps_back_to_the_full() -> None:
    """retain FIND_FULL 2 keeps the 2 newest and back to the full backup before them."""
    old = ref(1, -1)
    a = ref(2, 0)
    b = ref(10, 1, base=a)
    c = ref(20, 2, base=b)
    plan = plan_retain(inv([old, a, b, c], wal(1, range(0, 25))), 2, "FIND_FULL")
    assert deleted(plan) == [old.name]
    assert kept(plan) == {a.name, b.name, c.name}
    assert plan.wal == tuple(wal(1, range(0, 2)))


def test_retain_full_counts_full_backups_and_keeps_their_deltas() -> None:
    """retain FULL 1 keeps the newest full and its deltas; older chains go, deltas first."""
    a = ref(2, 0)
    a1 = ref(5, 1, base=a)
    a2 = ref(7, 2, base=a1)
    b = ref(10, 3)
    b1 = ref(12, 4, base=b)
    plan = plan_retain(inv([a, a1, a2, b, b1]), 1, "FULL")
    assert deleted(plan) == [a2.name, a1.name, a.name]
    assert kept(plan) == {b.name, b1.name}


def test_retain_with_fewer_backups_deletes_nothing() -> None:
    """retain N with N or fewer backups plans nothing, WAL included, and says so."""
    a = ref(2, 0)
    plan = plan_retain(inv([a], wal(1, range(0, 5))), 3)
    assert plan.empty and "nothing to delete" in plan.notes[0]
    with pytest.raises(RetentionError):
        plan_retain(inv([a]), 0)


def test_retain_orders_by_start_time_not_name() -> None:
    """After a pg_upgrade the newest backup's name sorts first; retain 1 still keeps it
    and the WAL of the old cluster (higher segment numbers on timeline 2) is compared by
    number: only segments below the kept backup's start go."""
    old = ref(0x50, 0, tl=2)  # base_0000000200..50: older, name sorts last
    new = ref(0x60, 5, tl=1)  # base_0000000100..60: newer, name sorts first
    assert new.name < old.name
    keys = [*wal(2, range(0x48, 0x58)), *wal(1, range(0x58, 0x68))]
    plan = plan_retain(inv([new, old], keys), 1)
    assert deleted(plan) == [old.name]
    assert plan.wal == tuple(sorted([*wal(2, range(0x48, 0x58)), *wal(1, range(0x58, 0x60))]))


def test_permanent_backup_and_its_wal_range_are_kept() -> None:
    """A permanent old backup stays with the WAL from its start to its finish; the rest
    of the old WAL goes."""
    perm = ref(2, 0, permanent=True, finish=4)
    b, c = ref(10, 1), ref(20, 2)
    plan = plan_retain(inv([perm, b, c], wal(1, range(0, 25))), 1)
    assert deleted(plan) == [b.name]
    assert kept(plan) == {perm.name, c.name}
    assert plan.wal == tuple(wal(1, [0, 1, *range(5, 20)]))


def test_permanent_delta_keeps_its_unmarked_bases() -> None:
    """A permanent delta keeps every backup it is based on, marked or not."""
    a = ref(2, 0)
    a1 = ref(5, 1, base=a, permanent=True)
    b = ref(10, 2)
    plan = plan_retain(inv([a, a1, b]), 1)
    assert deleted(plan) == []
    assert {d.name: d.reason for d in plan.keep}[a.name] == f"base of permanent {a1.name}"


def test_kept_delta_of_an_older_chain_keeps_that_chain() -> None:
    """A kept delta based (by --delta-from-name) on a backup older than the retain point
    keeps its bases, and the WAL horizon moves down to them."""
    a = ref(2, 0)
    b = ref(10, 1)
    c = ref(20, 2)
    a1 = ref(25, 3, base=a)
    plan = plan_retain(inv([a, b, c, a1], wal(1, range(0, 30))), 2)
    assert deleted(plan) == [b.name]
    assert {d.name: d.reason for d in plan.keep}[a.name] == f"base of kept {a1.name}"
    assert plan.wal == tuple(wal(1, range(0, 2)))


# -- before ---------------------------------------------------------------------------------


def test_before_name_deletes_older_backups() -> None:
    """before NAME keeps that backup and newer ones."""
    a, b, c = ref(2, 0), ref(10, 1), ref(20, 2)
    plan = plan_before(inv([a, b, c], wal(1, range(0, 25))), b.name)
    assert deleted(plan) == [a.name]
    assert plan.wal == tuple(wal(1, range(0, 10)))


def test_before_a_delta_needs_find_full() -> None:
    """before a delta fails without FIND_FULL; with it, its full and newer are kept."""
    old, a = ref(1, -1), ref(2, 0)
    a1 = ref(5, 1, base=a)
    with pytest.raises(RetentionError, match="delta") as caught:
        plan_before(inv([old, a, a1]), a1.name)
    assert "FIND_FULL" in caught.value.hint
    plan = plan_before(inv([old, a, a1]), a1.name, find_full=True)
    assert deleted(plan) == [old.name]


def test_before_time_uses_the_oldest_backup_started_at_or_after_it() -> None:
    """before TIME keeps the backups started at or after TIME; with none, nothing goes."""
    a, b, c = ref(2, 0), ref(10, 1), ref(20, 2)
    plan = plan_before(inv([a, b, c]), T0 + timedelta(minutes=30))
    assert deleted(plan) == [a.name]
    plan = plan_before(inv([a, b, c]), T0 + timedelta(hours=1))
    assert deleted(plan) == [a.name]
    plan = plan_before(inv([a, b, c], wal(1, range(0, 5))), T0 + timedelta(hours=9))
    assert plan.empty and "no backup started at or after" in plan.notes[0]


def test_before_unknown_name_lists_what_exists() -> None:
    """An unknown name is BackupNotFound naming the backups; no backups is NoBackupsFound."""
    a = ref(2, 0)
    with pytest.raises(BackupNotFound, match=a.name):
        plan_before(inv([a]), "base_000000010000000000000099")
    with pytest.raises(NoBackupsFound):
        plan_before(inv([]), "base_000000010000000000000099")


# -- everything, target ---------------------------------------------------------------------


def test_everything_refuses_permanent_backups_without_force() -> None:
    """everything refuses while permanent backups exist; FORCE deletes all of it."""
    a, b = ref(2, 0, permanent=True), ref(10, 1)
    keys = [*wal(1, range(0, 12)), "wal_005/00000001.history.lz4"]
    with pytest.raises(RetentionError, match=a.name) as caught:
        plan_everything(inv([a, b], keys))
    assert "FORCE" in caught.value.hint
    plan = plan_everything(
        inv([a, b], keys, unfinished={"base_000000010000000000000020": T0}), True
    )
    assert deleted(plan) == [b.name, a.name]
    assert set(plan.wal) == set(keys) and plan.sweep
    assert [d.name for d in plan.unfinished] == ["base_000000010000000000000020"]


def test_target_deletes_a_backup_and_its_dependents_only() -> None:
    """target NAME deletes it and every delta based on it, transitively (deepest first),
    keeps the rest, and deletes no WAL."""
    a = ref(2, 0)
    a1 = ref(5, 1, base=a)
    a2 = ref(7, 2, base=a1)
    a1b = ref(8, 3, base=a1)
    b = ref(10, 4)
    plan = plan_target(inv([a, a1, a2, a1b, b], wal(1, range(0, 12))), a1.name)
    assert deleted(plan)[-1] == a1.name and set(deleted(plan)) == {a1.name, a2.name, a1b.name}
    assert kept(plan) == {a.name, b.name}
    assert plan.wal == ()
    find_full = plan_target(inv([a, a1, a2, a1b, b]), a2.name, find_full=True)
    assert set(deleted(find_full)) == {a.name, a1.name, a2.name, a1b.name}
    assert deleted(find_full)[-1] == a.name
    assert deleted(plan_target(inv([a, b]), "LATEST")) == [b.name]


def test_target_refuses_when_a_permanent_backup_would_go() -> None:
    """target fails if the backup or a dependent is permanent."""
    a = ref(2, 0)
    a1 = ref(5, 1, base=a, permanent=True)
    with pytest.raises(RetentionError, match=a1.name):
        plan_target(inv([a, a1]), a.name)


def test_target_of_an_interrupted_deletion_removes_the_folder() -> None:
    """target NAME of a folder whose sentinel is gone deletes the folder, unless it was
    written within the grace period (a backup-push may be writing it)."""
    name = "base_000000010000000000000020"
    old = inv([], unfinished={name: NOW - 2 * GRACE})
    assert [d.name for d in plan_target(old, name).unfinished] == [name]
    with pytest.raises(RetentionError, match="backup-push"):
        plan_target(inv([], unfinished={name: NOW - GRACE / 2}), name)


# -- garbage, unfinished folders ------------------------------------------------------------


def test_garbage_deletes_old_unfinished_folders_and_wal_before_every_backup() -> None:
    """garbage: unfinished folders older than the grace period go, recent ones stay (with a
    note); WAL below the oldest non-permanent backup goes but a permanent backup's own (as
    WAL-G, and as retain); .history stays."""
    perm = ref(5, 0, permanent=True)
    b = ref(10, 1)
    stale, fresh = "base_000000010000000000000003", "base_00000001000000000000000C"
    keys = [*wal(1, range(0, 12)), "wal_005/00000001.history.lz4"]
    temp = {"wal_005/.walg-tmp-x.1": NOW - 2 * GRACE, "wal_005/.walg-tmp-y.2": NOW}
    unfinished = {stale: NOW - 2 * GRACE, fresh: NOW - GRACE / 2}
    plan = plan_garbage(inv([perm, b], keys, unfinished=unfinished, temporary=temp))
    assert deleted(plan) == [] and kept(plan) == {perm.name, b.name}
    assert [d.name for d in plan.unfinished] == [stale]
    assert any(fresh in note for note in plan.notes)
    assert plan.wal == tuple(wal(1, [*range(0, 5), *range(6, 10)]))
    assert plan.temporary == ("wal_005/.walg-tmp-x.1",)
    only_permanent = plan_garbage(inv([perm], keys))
    assert only_permanent.wal == tuple(wal(1, range(0, 5)))
    archives = plan_garbage(inv([perm, b], keys, unfinished=unfinished), "ARCHIVES")
    assert archives.unfinished == () and archives.wal == plan.wal
    backups = plan_garbage(inv([perm, b], keys, unfinished=unfinished), "BACKUPS")
    assert backups.wal == () and backups.unfinished == plan.unfinished


def test_garbage_without_backups_keeps_wal() -> None:
    """With no complete backup, garbage keeps all WAL (the first backup may need it)."""
    plan = plan_garbage(inv([], wal(1, range(0, 5))))
    assert plan.wal == () and "no complete backup" in plan.notes[0]


def test_retain_finishes_an_interrupted_deletion() -> None:
    """retain also deletes old unfinished folders below what it keeps (their sentinel was
    deleted by an interrupted run), but not newer ones or recent ones."""
    a, b = ref(10, 1), ref(20, 2)
    below, above = "base_000000010000000000000002", "base_000000010000000000000019"
    recent_below = "base_000000010000000000000003"
    unfinished = {below: NOW - 2 * GRACE, above: NOW - 2 * GRACE, recent_below: NOW}
    plan = plan_retain(inv([a, b], unfinished=unfinished), 1)
    assert [d.name for d in plan.unfinished] == [below]


def test_base_of_a_running_delta_push_is_kept() -> None:
    """A recent unfinished delta folder (a backup-push writing a delta now) keeps its base
    and the base's chain from retain, and blocks target; an old one does not."""
    a = ref(2, 0)
    a1 = ref(5, 1, base=a)
    b = ref(10, 2)
    running = backup_name(segment_name(1, 12), a1.start_wal)
    plan = plan_retain(inv([a, a1, b], unfinished={running: NOW}), 1)
    assert deleted(plan) == []
    assert {d.name: d.reason for d in plan.keep}[a.name].startswith(f"base of {running}")
    with pytest.raises(RetentionError, match="backup-push may be writing"):
        plan_target(inv([a, a1, b], unfinished={running: NOW}), a.name)
    stale = plan_retain(inv([a, a1, b], unfinished={running: NOW - 2 * GRACE}), 1)
    assert deleted(stale) == [a1.name, a.name]


# -- properties -----------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[BackupRef], list[str]]:
    """Backups in start order with random timelines (names out of order), random deltas
    on earlier backups, random permanent marks; WAL segments on several timelines."""
    backups: list[BackupRef] = []
    seg = draw(st.integers(0, 3))
    for i in range(draw(st.integers(1, 9))):
        seg += draw(st.integers(1, 4))
        finish = seg + draw(st.integers(0, 2))
        base = None
        if backups and draw(st.booleans()):
            base = draw(st.sampled_from(backups))
        tl = draw(st.integers(1, 3))
        permanent = draw(st.integers(0, 4)) == 0
        backups.append(ref(seg, i, tl=tl, base=base, permanent=permanent, finish=finish))
        seg = finish
    keys = [k for tl in (1, 2, 3) for k in wal(tl, range(0, seg + 3))]
    keys += ["wal_005/00000002.history.lz4", f"wal_005/{segment_name(1, 1)}.partial.lz4"]
    return backups, keys


def _check_safe(backups: list[BackupRef], keys: list[str], plan: Plan) -> None:
    by_name = {b.name: b for b in backups}
    doomed, keep = set(deleted(plan)), kept(plan)
    assert doomed.isdisjoint(keep) and doomed | keep == set(by_name)
    for name in keep:  # no kept backup's chain member is deleted
        current = by_name[name]
        while current.delta_from in by_name:
            current = by_name[current.delta_from]
            assert current.name not in doomed
    assert not any(by_name[n].permanent for n in doomed)
    order = deleted(plan)
    for name in order:  # dependents go before their bases
        base = by_name[name].delta_from
        if base in doomed:
            assert order.index(name) < order.index(base)
    rule_kept = [by_name[d.name] for d in plan.keep if "permanent" not in d.reason]
    horizon = min((wal_position(b.start_wal) for b in rule_kept), default=None)
    for key in plan.wal:
        name, kind = classify_wal_key(key) or ("", None)
        assert kind is not WalFileKind.HISTORY
        assert horizon is not None and wal_position(name) < horizon
        for b in by_name.values():
            if b.permanent:
                assert (
                    not wal_position(b.start_wal)
                    <= wal_position(name)
                    <= wal_position(b.finish_wal)
                )


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(1, 10), st.sampled_from([None, "FULL", "FIND_FULL"]))
def test_retain_never_breaks_what_it_keeps(
    history: tuple[list[BackupRef], list[str]], count: int, modifier: str | None
) -> None:
    """Whatever the backups, retain keeps the N newest (FULL: from the N-th newest full),
    every chain member of what it keeps, permanent backups and the WAL they need."""
    backups, keys = history
    try:
        plan = plan_retain(inv(backups, keys), count, modifier)  # type: ignore[arg-type]
    except RetentionError:
        assert modifier is None and backups[-count].is_delta
        return
    _check_safe(backups, keys, plan)
    if modifier != "FULL":
        assert {b.name for b in backups[-count:]} <= kept(plan)


@settings(max_examples=200, deadline=None)
@given(histories(), st.floats(-1, 10), st.booleans())
def test_before_time_never_breaks_what_it_keeps(
    history: tuple[list[BackupRef], list[str]], hours: float, find_full: bool
) -> None:
    """before TIME keeps every backup started at or after TIME, and the safety rules hold."""
    backups, keys = history
    when = T0 + timedelta(hours=hours)
    try:
        plan = plan_before(inv(backups, keys), when, find_full)
    except RetentionError:
        assert not find_full
        return
    _check_safe(backups, keys, plan)
    assert {b.name for b in backups if b.start_time >= when} <= kept(plan)


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_target_deletes_exactly_the_dependents(
    history: tuple[list[BackupRef], list[str]], data: st.DataObject
) -> None:
    """target deletes the chosen backup and exactly those based on it, transitively."""
    backups, keys = history
    chosen = data.draw(st.sampled_from(backups))
    try:
        plan = plan_target(inv(backups, keys), chosen.name)
    except RetentionError:
        return
    by_name = {b.name: b for b in backups}

    def based_on_chosen(b: BackupRef) -> bool:
        while b.delta_from in by_name:
            if b.delta_from == chosen.name:
                return True
            b = by_name[b.delta_from]
        return False

    expected = {chosen.name} | {b.name for b in backups if based_on_chosen(b)}
    assert set(deleted(plan)) == expected
    assert plan.wal == ()
    _check_safe(backups, keys, plan)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_garbage_never_deletes_a_backup_or_wal_it_may_need(
    history: tuple[list[BackupRef], list[str]],
) -> None:
    """garbage keeps every backup and deletes exactly the segment/backup/partial WAL below
    the oldest non-permanent backup's start (the oldest backup's, if all are permanent)
    outside every backup's own start..finish."""
    backups, keys = history
    plan = plan_garbage(inv(backups, keys))
    assert plan.delete == () and kept(plan) == {b.name for b in backups}
    bases = [b for b in backups if not b.permanent] or backups
    oldest = min(wal_position(b.start_wal) for b in bases)
    spans = [(wal_position(b.start_wal), wal_position(b.finish_wal)) for b in backups]
    expected = set()
    for key in keys:
        name, kind = classify_wal_key(key) or ("", None)
        if kind is None or kind is WalFileKind.HISTORY:
            continue
        position = wal_position(name)
        if position < oldest and not any(start <= position <= end for start, end in spans):
            expected.add(key)
    assert set(plan.wal) == expected
