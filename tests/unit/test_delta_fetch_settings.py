"""WALG_DELTA_FROM_NAME, WALG_DELTA_FROM_USER_DATA and WALG_FETCH_TARGET_USER_DATA read as
WAL-G reads them: the defaults of backup-push --delta-from-name / --delta-from-user-data
and backup-fetch --target-user-data (issue 17)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from servers.synthetic_backups import at, put_backup

from walg.commands.backup_fetch import _backup_name
from walg.commands.backup_push import _delta_choice
from walg.config import load
from walg.errors import ConfigError
from walg.format import layout
from walg.storage.file import FileStorage


def push_args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {"full": False, "delta_from_name": None,
                                 "delta_from_user_data": None}  # fmt: skip
    return argparse.Namespace(**{**values, **given})


def fetch_args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"backup_name": None, "target_user_data": None, **given})


@pytest.fixture
def store(tmp_path: Path) -> tuple[dict[str, str], str, str]:
    """A file storage with two full backups, the first with UserData {"tag": "a"}."""
    root = tmp_path / "store"
    storage = FileStorage(str(root))
    first, second = put_backup(storage, 2, at(0)), put_backup(storage, 6, at(1))
    key = layout.metadata_key(first)
    doc = json.loads(storage.read_bytes(key))
    doc["user_data"] = {"tag": "a"}
    storage.put_object(key, json.dumps(doc).encode())
    return {"WALG_FILE_PREFIX": str(root)}, first, second


def test_registered_and_loaded() -> None:
    """The three settings load (no longer refused as unsupported)."""
    env = {"WALG_DELTA_FROM_NAME": "base_1", "WALG_DELTA_FROM_USER_DATA": '{"a": 1}',
           "WALG_FETCH_TARGET_USER_DATA": "x"}  # fmt: skip
    backup = load(env).backup
    assert (backup.delta_from_name, backup.delta_from_user_data) == ("base_1", '{"a": 1}')
    assert backup.fetch_target_user_data == "x"
    assert load({}).backup.delta_from_name is None


def test_delta_from_name_setting_is_the_flags_default() -> None:
    """The setting names the base when the flag does not; the flag wins; --full ignores it;
    with --delta-from-user-data on the command line both are given: an error, as WAL-G."""
    settings = load({"WALG_DELTA_FROM_NAME": "base_000000010000000000000002"})
    assert _delta_choice(push_args(), settings) == (False, "base_000000010000000000000002")
    assert _delta_choice(push_args(delta_from_name="base_9"), settings) == (False, "base_9")
    assert _delta_choice(push_args(full=True), settings) == (True, None)
    with pytest.raises(ConfigError, match="both"):
        _delta_choice(push_args(delta_from_user_data='"x"'), settings)


def test_delta_from_user_data_setting(store: tuple[dict[str, str], str, str]) -> None:
    """WALG_DELTA_FROM_USER_DATA bases the delta on the backup with that UserData."""
    env, first, _ = store
    settings = load({**env, "WALG_DELTA_FROM_USER_DATA": '{"tag": "a"}'})
    assert _delta_choice(push_args(), settings) == (False, first)
    assert _delta_choice(push_args(full=True), settings) == (True, None)


def test_fetch_target_user_data_setting(store: tuple[dict[str, str], str, str]) -> None:
    """WALG_FETCH_TARGET_USER_DATA chooses the backup when no name is given; the flag wins;
    a name as well is refused naming the setting (WAL-G refuses it too)."""
    env, first, second = store
    settings = load({**env, "WALG_FETCH_TARGET_USER_DATA": '{"tag": "a"}'})
    assert _backup_name(fetch_args(), settings) == first
    with pytest.raises(ConfigError, match="WALG_FETCH_TARGET_USER_DATA"):
        _backup_name(fetch_args(backup_name="LATEST"), settings)
    assert _backup_name(fetch_args(backup_name=second), load(env)) == second
