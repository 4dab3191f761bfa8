"""Config files as WAL-G reads them: JSON, YAML and TOML by extension, WAL-G's default
lookup, the environment over the file, unknown keys warned about."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from walg.cli import main
from walg.config import Settings, find_default_config_file, load, read_config_file
from walg.errors import ConfigError

SETTINGS = {
    "WALG_UPLOAD_CONCURRENCY": 3,
    "WALG_PREVENT_WAL_OVERWRITE": True,
    "WALG_COMPRESSION_METHOD": "brotli",
    "WALG_NETWORK_RATE_LIMIT": 1500.0,
}

#: The same settings written in each format, as a WAL-G user would write them.
FILES = {
    "walg.json": json.dumps(SETTINGS),
    "walg.yaml": "WALG_UPLOAD_CONCURRENCY: 3\nWALG_PREVENT_WAL_OVERWRITE: true\n"
    "walg_compression_method: brotli\nWALG_NETWORK_RATE_LIMIT: 1500.0\n",
    "walg.yml": "---\nWALG_UPLOAD_CONCURRENCY: '3'\nWALG_PREVENT_WAL_OVERWRITE: TRUE\n"
    'WALG_COMPRESSION_METHOD: "brotli"\nWALG_NETWORK_RATE_LIMIT: 1.5e3\n',
    "walg.toml": "WALG_UPLOAD_CONCURRENCY = 3\nWALG_PREVENT_WAL_OVERWRITE = true\n"
    'WALG_COMPRESSION_METHOD = "brotli"\nWALG_NETWORK_RATE_LIMIT = 1500.0\n',
}
EXPECTED = {
    "WALG_UPLOAD_CONCURRENCY": "3",
    "WALG_PREVENT_WAL_OVERWRITE": "true",
    "WALG_COMPRESSION_METHOD": "brotli",
    "WALG_NETWORK_RATE_LIMIT": "1500",
}


def loaded_by_cli(argv: list[str], env: dict[str, str]) -> Settings:
    """The settings ``wal-g`` builds for ``argv`` (the command only records them)."""
    seen: list[Settings] = []

    def run(args: argparse.Namespace, settings: Any) -> int:
        seen.append(settings)
        return 0

    assert main(argv, environ=env, load_command=lambda name: run) == 0
    return seen[0]


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_format_reads_the_same_settings(tmp_path: Path, name: str) -> None:
    """JSON, YAML (.yaml, .yml) and TOML give the same values, as viper's GetString
    spells them (numbers and booleans as text, 1500.0 as 1500); keys in any case."""
    path = tmp_path / name
    path.write_text(FILES[name])
    assert read_config_file(str(path)) == EXPECTED


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("where", ["after the command", "after its arguments", "before"])
def test_config_flag_anywhere_on_the_command_line(
    tmp_path: Path, walg_env: dict[str, str], name: str, where: str
) -> None:
    """``--config FILE`` is read before the command, after it, and after its positional
    words, in every format (cobra's persistent flag)."""
    path = tmp_path / name
    path.write_text(FILES[name])
    argv = {
        "after the command": ["backup-fetch", "--config", str(path), "/tmp/x", "LATEST"],
        "after its arguments": ["backup-fetch", "/tmp/x", "LATEST", f"--config={path}"],
        "before": ["--config", str(path), "backup-fetch", "/tmp/x", "LATEST"],
    }[where]
    settings = loaded_by_cli(argv, walg_env)
    assert settings.concurrency.upload == 3
    assert settings.wal.prevent_overwrite is True
    assert settings.compression.method == "brotli"
    assert settings.rate_limits.network == 1500


def test_wal_push_reads_config_after_the_command(
    tmp_path: Path, walg_env: dict[str, str]
) -> None:
    """archive_command = 'wal-g wal-push %p --config FILE' reaches the hand parser."""
    path = tmp_path / "walg.yaml"
    path.write_text("WALG_UPLOAD_CONCURRENCY: 5\n")
    settings = loaded_by_cli(["wal-push", "pg_wal/x", "--config", str(path)], walg_env)
    assert settings.concurrency.upload == 5


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    """viper's AutomaticEnv: a variable beats the same name in the file; an empty variable
    counts as unset, so the file's value holds."""
    path = tmp_path / "walg.toml"
    path.write_text('WALG_UPLOAD_CONCURRENCY = 3\nWALG_DOWNLOAD_CONCURRENCY = 4\n')
    settings = load({"WALG_UPLOAD_CONCURRENCY": "7", "WALG_DOWNLOAD_CONCURRENCY": ""}, str(path))
    assert (settings.concurrency.upload, settings.concurrency.download) == (7, 4)


def test_default_lookup_follows_viper_order(tmp_path: Path) -> None:
    """Without --config: WALG_CONFIG_PATH, else $HOME/.walg.json, .toml, .yaml, .yml."""
    env = {"HOME": str(tmp_path)}
    assert find_default_config_file(env) is None
    (tmp_path / ".walg.yml").write_text("WALG_UPLOAD_CONCURRENCY: 2\n")
    assert find_default_config_file(env) == str(tmp_path / ".walg.yml")
    (tmp_path / ".walg.yaml").write_text("WALG_UPLOAD_CONCURRENCY: 2\n")
    assert find_default_config_file(env) == str(tmp_path / ".walg.yaml")
    (tmp_path / ".walg.toml").write_text("WALG_UPLOAD_CONCURRENCY = 2\n")
    assert find_default_config_file(env) == str(tmp_path / ".walg.toml")
    (tmp_path / ".walg.json").write_text("{}")
    assert find_default_config_file(env) == str(tmp_path / ".walg.json")
    assert find_default_config_file({**env, "WALG_CONFIG_PATH": "/etc/w.yaml"}) == "/etc/w.yaml"


def test_default_yaml_file_is_used_by_the_cli(tmp_path: Path, walg_env: dict[str, str]) -> None:
    """A ~/.walg.yaml alone configures wal-g, as it does WAL-G."""
    (tmp_path / ".walg.yaml").write_text("WALG_UPLOAD_CONCURRENCY: 9\n")
    settings = loaded_by_cli(["backup-list"], {**walg_env, "HOME": str(tmp_path)})
    assert settings.concurrency.upload == 9


def test_unknown_keys_are_warned_about(tmp_path: Path) -> None:
    """WAL-G warns "X is unknown" for file keys it does not know; so does walg, for
    misspelled WALG_ names and for names no setting can have (a nested table's dotted keys,
    dashes)."""
    path = tmp_path / "walg.yaml"
    path.write_text(
        "WALG_UPLOAD_CONCURENCY: 3\ns3:\n  prefix: s3://b/p\nWALG-FILE-PREFIX: /x\n"
    )
    settings = load({}, str(path))
    assert set(settings.unknown) >= {"WALG_UPLOAD_CONCURENCY", "S3.PREFIX", "WALG-FILE-PREFIX"}
    warnings = "\n".join(settings.config_warnings())
    assert "WALG_UPLOAD_CONCURENCY is unknown" in warnings
    assert "did you mean WALG_UPLOAD_CONCURRENCY?" in warnings
    assert "S3.PREFIX is unknown" in warnings


def test_yaml_keeps_yaml_1_2_meanings(tmp_path: Path) -> None:
    """As WAL-G's yaml.v3: ``yes`` and dates stay text, quoted values are text, a plain
    ``null``/``~``/nothing is unset, hexadecimal and octal are numbers."""
    path = tmp_path / "w.yml"
    path.write_text(
        "A: yes\nB: 2024-01-31\nC: 'null'\nD: null\nE: ~\nF:\nG: 0x10\nH: 0o17\nI: 007\n"
    )
    assert read_config_file(str(path)) == {
        "A": "yes", "B": "2024-01-31", "C": "null", "G": "16", "H": "15", "I": "7",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("w.yaml", "a: [1\n", "is not valid YAML"),
        ("w.yaml", "- WALG_S3_PREFIX\n", "holds a list, not a YAML mapping"),
        ("w.toml", "A = \n", "is not valid TOML"),
        ("w.toml", "A = [1, 2]\n", "the value of A is an array"),
        ("w.toml", "A = 2024-01-31\n", "the value of A is a date"),
        ("w.json", "[]", "holds an array, not a JSON object"),
        ("w.env", "A=1\n", "a .env file, which walg does not read"),
        ("walg", "{}", "has no extension"),
        ("w.conf", "{}", "unknown extension 'conf'"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, name: str, text: str, words: str) -> None:
    """Where WAL-G warns and goes on without the file, walg refuses it (exit 2) naming
    the problem: its settings would otherwise be dropped unnoticed."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load({}, str(path))
    assert words in info.value.msg
    assert str(path) in info.value.msg


PROBE = """
import sys
from walg.config import load
load({}, sys.argv[1])
print(" ".join(sorted(m for m in sys.modules if m in ("json", "yaml", "tomllib"))))
"""


@pytest.mark.parametrize(
    ("name", "modules"),
    [("w.json", ["json"]), ("w.toml", ["tomllib"]), ("w.yaml", ["yaml"])],
)
def test_only_the_file_s_format_is_imported(tmp_path: Path, name: str, modules: list[str]) -> None:
    """Reading a config file imports its format's module only (json for .json)."""
    path = tmp_path / name
    path.write_text({"w.json": "{}", "w.toml": "", "w.yaml": "{}"}[name])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == modules
