"""backup-fetch's wholeness rules: what must exist before writing, and what must be written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from walg.backup.completeness import (
    check_label_written,
    check_parts_present,
    check_written,
    expected_files,
)
from walg.errors import IntegrityError
from walg.format.chain import Selection
from walg.format.meta import FileDescription, FilesMetadata

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
LABELS = {"pg_control.tar.lz4", "backup_label.tar.lz4"}
SETS = {
    "part_001.tar.lz4": ["/base/1/1", "/base/1/2"],
    "part_002.tar.lz4": ["/base/1/3"],
    "pg_control.tar.lz4": ["/global/pg_control"],
    "backup_label.tar.lz4": ["/backup_label"],
}
FILES = FilesMetadata(
    {
        "/base/1/1": FileDescription(WHEN),
        "/base/1/2": FileDescription(WHEN, is_skipped=True),
        "/base/1/3": FileDescription(WHEN, is_incremented=True),
        "/global/pg_control": FileDescription(WHEN),
        "/backup_label": FileDescription(WHEN),
    },
    SETS,
)


def test_every_part_named_must_exist() -> None:
    """A data part TarFileSets names but storage lacks is named; all present passes."""
    check_parts_present("b", set(SETS), FILES, None, restored=True)
    with pytest.raises(IntegrityError, match=r"backup b is incomplete: part_002\.tar\.lz4 missing"):
        check_parts_present("b", set(SETS) - {"part_002.tar.lz4"}, FILES, None, restored=True)


@pytest.mark.parametrize("label", sorted(LABELS))
def test_the_restored_backup_needs_pg_control_and_backup_label(label: str) -> None:
    """Without TarFileSets (old WAL-G), pg_control.tar and backup_label.tar are still required."""
    present = {"part_001.tar.lz4"} | LABELS
    check_parts_present("b", present, None, None, restored=True)
    with pytest.raises(IntegrityError, match=label.replace(".", r"\.")):
        check_parts_present("b", present - {label}, None, None, restored=True)
    check_parts_present("b", present - {label}, None, None, restored=False)


def test_backup_label_may_live_in_a_data_part() -> None:
    """backup_label listed in a data part (no backup_label.tar) is not missing."""
    files = FilesMetadata({}, {"part_001.tar": ["/backup_label"], "pg_control.tar": []})
    check_parts_present("b", {"part_001.tar", "pg_control.tar"}, files, None, restored=True)


def test_an_older_backup_of_a_chain_needs_only_the_parts_it_gives() -> None:
    """For an ancestor, only parts holding a selected file must exist."""
    wanted = Selection("full", whole=frozenset({"base/1/3"}))
    check_parts_present("full", {"part_002.tar.lz4"}, FILES, wanted, restored=False)
    with pytest.raises(IntegrityError, match=r"part_002\.tar\.lz4 missing"):
        check_parts_present("full", {"part_001.tar.lz4"}, FILES, wanted, restored=False)


def test_expected_files_leave_out_skipped_and_unselected() -> None:
    """Skipped files come from an older backup; an ancestor gives only what is selected."""
    assert expected_files(FILES, None) == {
        "base/1/1", "base/1/3", "global/pg_control", "backup_label"}
    assert expected_files(FILES, Selection("x", increments=frozenset({"base/1/3"}))) == {
        "base/1/3"}
    assert expected_files(None, None) == set()


def test_check_written_names_what_is_missing() -> None:
    """A listed file that no part held fails naming it; extra names are fine."""
    check_written("b", {"base/1/1"}, {"base/1/1", "base"})
    with pytest.raises(IntegrityError, match=r"backup b: base/1/3 listed .* not found"):
        check_written("b", {"base/1/1", "base/1/3"}, {"base/1/1"})
    with pytest.raises(IntegrityError, match="holds no backup_label"):
        check_label_written("b", {"base/1/1"})
