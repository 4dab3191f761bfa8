"""Settings walg must not ignore: relative file prefixes, WAL-G settings walg does not
implement (refused, exit 2), and unknown WALG_*/WALE_* names (warned about, once)."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from servers.logtext import untimed

from walg.cli import CommandRunner, main
from walg.config import find_default_config_file, load
from walg.config.loader import UNSUPPORTED_PREFIXES
from walg.config.registry import KNOWN_NAMES
from walg.config.unsupported import UNSUPPORTED
from walg.errors import EX_USAGE, ConfigError

REFUSED = sorted({name for entry in UNSUPPORTED if entry.treatment == "refuse"
                  for name in entry.names})
STORAGE = {"WALG_FILE_PREFIX": "/var/backups/walg"}


class Recorder:
    """A command loader whose commands record that they ran and succeed."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, name: str) -> CommandRunner:
        def run(args: argparse.Namespace, settings: Any) -> int:
            self.ran.append(name)
            return 0

        return run


def write_config(tmp_path: Path, content: dict[str, object]) -> str:
    path = tmp_path / "walg.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return str(path)


# --- item 6: a relative WALG_FILE_PREFIX --------------------------------------------------


@pytest.mark.parametrize("name", ["WALG_FILE_PREFIX", "WALE_FILE_PREFIX"])
@pytest.mark.parametrize(
    "value", ["backups", "./backups", "../backups", "~", "~/backups", "~postgres/b", " walg/ "]
)
def test_relative_file_prefix_is_refused(name: str, value: str) -> None:
    """A file prefix that is not absolute (~ included: it is not expanded) is a ConfigError."""
    with pytest.raises(ConfigError) as info:
        load({name: value})
    err = info.value
    assert name in err.msg and "not an absolute path" in err.msg and "PGDATA" in err.msg
    assert err.exit_code == EX_USAGE and "absolute" in err.hint
    assert ("'~' is not expanded" in err.hint) == ("~" in value)


@pytest.mark.parametrize(
    ("env", "path"),
    [({"WALG_FILE_PREFIX": "/srv/walg/"}, "/srv/walg"),
     ({"WALE_FILE_PREFIX": "file://localhost/srv/wal-e"}, "/srv/wal-e"),
     ({"WALG_FILE_PREFIX": "/"}, "/")],
)
def test_absolute_file_prefix_is_accepted(env: dict[str, str], path: str) -> None:
    """Absolute paths (and WAL-E's file://localhost/ form) configure file storage."""
    assert load(env).require_storage().path == path


def test_empty_file_prefix_counts_as_unset() -> None:
    """An empty or blank WALG_FILE_PREFIX is not a relative path: it is unset."""
    assert load({"WALG_FILE_PREFIX": "", "WALE_FILE_PREFIX": "  "}).storages == ()


def test_relative_prefix_stops_every_command_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """wal-push with a relative prefix exits 2 before the command runs."""
    commands = Recorder()
    code = main(["wal-push", "pg_wal/000000010000000000000001"],
                environ={"WALG_FILE_PREFIX": "archive"}, load_command=commands)
    assert (code, commands.ran) == (EX_USAGE, [])
    err = untimed(capsys.readouterr().err)
    assert "ERROR: WALG_FILE_PREFIX='archive' is not an absolute path" in err


# --- item 7: WAL-G settings walg does not implement ---------------------------------------


@pytest.mark.parametrize("name", REFUSED)
def test_unsupported_setting_stops_every_command_with_exit_2(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each refused WAL-G setting makes a command exit 2 with one ERROR line naming it."""
    commands = Recorder()
    code = main(["backup-list"], environ={**STORAGE, name: "x"}, load_command=commands)
    assert (code, commands.ran) == (EX_USAGE, [])
    err = untimed(capsys.readouterr().err).splitlines()
    assert err[0].startswith(f"ERROR: {name} is set, but walg does not implement ")
    assert err[1].startswith(f"HINT: unset {name} and ")
    assert len(err) == 2


@pytest.mark.parametrize("name", ["WALG_CSE_KMS_ID", "walg_s3_sse_c", "Walg_Az_Prefix"])
def test_unsupported_setting_in_config_file_is_refused(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused setting in the --config file (any case) stops the command like the env."""
    path = write_config(tmp_path, {name: "x", **STORAGE})
    commands = Recorder()
    assert main(["--config", path, "backup-list"], environ={}, load_command=commands) == 2
    assert commands.ran == []
    assert f"ERROR: {name.upper()} is set" in untimed(capsys.readouterr().err)


def test_every_refused_setting_is_named() -> None:
    """With several refused settings set, the one error names them all."""
    with pytest.raises(ConfigError) as info:
        load({**STORAGE, "WALG_CSE_KMS_ID": "k", "WALG_AZ_PREFIX": "azure://c/p"})
    assert "WALG_CSE_KMS_ID, WALG_AZ_PREFIX are set" in info.value.msg
    assert "client-side encryption with AWS KMS or Azure Blob Storage" in info.value.msg


@pytest.mark.parametrize(
    ("name", "value"),
    [("WALG_LIBSODIUM_KEY_TRANSFORM", "none"), ("WALG_UPLOAD_WAL_METADATA", "NOMETADATA"),
     ("GCS_NORMALIZE_PREFIX", "true"), ("WALG_TARGET_STORAGE", "default"),
     ("WALG_S3_RETENTION_PERIOD", "-1"), ("WALG_ENVELOPE_CACHE_EXPIRATION", "0")],
)
def test_wal_gs_default_values_are_accepted(name: str, value: str) -> None:
    """A refused setting set to WAL-G's own default changes nothing, so it is accepted."""
    settings = load({**STORAGE, name: value})
    assert name not in settings.unknown and settings.config_warnings() == []


def test_refused_setting_in_config_path_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WALG_CONFIG_PATH names the config file (as in WAL-G), so its settings are checked."""
    path = write_config(tmp_path, {"WALG_CSE_KMS_ID": "k", **STORAGE})
    assert find_default_config_file({"WALG_CONFIG_PATH": path, "HOME": "/nonexistent"}) == path
    commands = Recorder()
    assert main(["backup-list"], environ={"WALG_CONFIG_PATH": path}, load_command=commands) == 2
    assert "ERROR: WALG_CSE_KMS_ID is set" in untimed(capsys.readouterr().err)


def test_unsupported_table_is_consistent() -> None:
    """No name is both implemented (registry) and unsupported, nor listed twice."""
    names = [name for entry in UNSUPPORTED for name in entry.names]
    assert len(names) == len(set(names))
    assert set(names).isdisjoint(KNOWN_NAMES)
    assert all(entry.hint for entry in UNSUPPORTED if entry.treatment == "refuse")


def test_loader_checks_every_unsupported_name() -> None:
    """The loader skips the unsupported table only for names none of its entries (nor an
    unknown WALG_*/WALE_* name) could start like."""
    names = [name for entry in UNSUPPORTED for name in entry.names]
    assert all(name.startswith(UNSUPPORTED_PREFIXES) for name in names)
    assert {"WALG_", "WALE_"} <= set(UNSUPPORTED_PREFIXES)


def test_installed_wal_g_refuses_kms_key(
    venv_bin: Path, clean_env: dict[str, str], walg_env: dict[str, str]
) -> None:
    """The real `wal-g` exits 2 with one ERROR and one HINT line for WALG_CSE_KMS_ID."""
    env = {**clean_env, **walg_env, "WALG_CSE_KMS_ID": "secret-key-material"}
    done = subprocess.run([str(venv_bin / "wal-g"), "backup-list"], env=env,
                          capture_output=True, text=True, timeout=60)
    lines = untimed(done.stderr).splitlines()
    assert done.returncode == 2, untimed(done.stderr)
    assert lines[0].startswith("ERROR: WALG_CSE_KMS_ID is set, but walg does not implement "
                               "client-side encryption with AWS KMS yet")
    assert lines[1].startswith("HINT: unset WALG_CSE_KMS_ID and encrypt with OpenPGP")
    assert len(lines) == 2 and "secret-key-material" not in untimed(done.stderr)


# --- unknown and not implemented names: warned about, the command still runs -------------


def warnings_in(stderr: str) -> list[str]:
    return [line.removeprefix("WARNING: ") for line in stderr.splitlines()
            if line.startswith("WARNING: ")]


def test_unknown_name_is_warned_once_and_the_command_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A typo of a WALG_ name gets one warning naming it, with the closest known name."""
    commands = Recorder()
    env = {**STORAGE, "WALG_UPLOAD_CONCURENCY": "4", "WALE_WHATEVER": "1", "OTHER_THING": "1"}
    assert main(["backup-list"], environ=env, load_command=commands) == 0
    assert commands.ran == ["backup-list"]
    assert warnings_in(untimed(capsys.readouterr().err)) == [
        "WALE_WHATEVER is unknown: walg and WAL-G do not read it",
        "WALG_UPLOAD_CONCURENCY is unknown: walg and WAL-G do not read it "
        "(did you mean WALG_UPLOAD_CONCURRENCY?)",
    ]


def test_unknown_key_in_config_file_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown WALG_ key in the config file is warned about like one in the environment."""
    path = write_config(tmp_path, {"walg_delta_max_step": 3, **STORAGE})
    commands = Recorder()
    assert main(["--config", path, "backup-list"], environ={}, load_command=commands) == 0
    assert commands.ran == ["backup-list"]
    [warning] = warnings_in(untimed(capsys.readouterr().err))
    assert warning.startswith("WALG_DELTA_MAX_STEP is unknown")
    assert "did you mean WALG_DELTA_MAX_STEPS?" in warning


def test_not_implemented_harmless_setting_is_noted(capsys: pytest.CaptureFixture[str]) -> None:
    """WALG_LOG_DESTINATION runs the command with a warning that it has no effect."""
    commands = Recorder()
    env = {**STORAGE, "WALG_LOG_DESTINATION": "/var/log/walg.log", "WALG_UPLOAD_QUEUE": "4"}
    assert main(["backup-list"], environ=env, load_command=commands) == 0
    assert commands.ran == ["backup-list"]
    assert warnings_in(untimed(capsys.readouterr().err)) == [
        "WALG_LOG_DESTINATION has no effect: walg does not implement logging to a file "
        "(walg logs to stderr)"
    ]


def test_known_wal_g_names_are_not_unknown() -> None:
    """WAL-G names walg ignores or refuses, WALE_ fallbacks, and non-WALG names are not
    reported as unknown."""
    env = {**STORAGE, "WALG_UPLOAD_QUEUE": "2", "WALE_S3_PREFIX": "s3://b/p",
           "WALE_GPG_KEY_ID": "k", "WALG_CONFIG_PATH": "", "AWS_ROLE_ARN": "a", "HOME": "/"}
    assert load(env).unknown == ()
