"""The ``wal-g`` command line: parsing, dispatch, and how errors become exit codes."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers.logtext import untimed

from walg import __version__
from walg.cli import (
    COMMANDS,
    DELETE_MODES,
    LEAN_COMMANDS,
    CommandRunner,
    build_parser,
    hoist_global_options,
    lean_args,
    main,
)
from walg.errors import ConfigError, ObjectNotFound, WalgError

# One valid command line per command, in the order of COMMANDS.
SAMPLE_ARGV: dict[str, list[str]] = {
    "backup-push": ["backup-push", "/var/lib/postgresql/15/main"],
    "backup-fetch": ["backup-fetch", "/tmp/restore", "LATEST"],
    "backup-verify": ["backup-verify", "--json", "LATEST"],
    "backup-list": ["backup-list", "--detail", "--json"],
    "backup-mark": ["backup-mark", "base_000000010000000000000002"],
    "delete": ["delete", "retain", "FULL", "3", "--confirm"],
    "wal-push": ["wal-push", "pg_wal/000000010000000000000001"],
    "wal-fetch": ["wal-fetch", "000000010000000000000001", "pg_wal/RECOVERYXLOG"],
    "daemon": ["daemon", "/run/walg.sock"],
    "wal-verify": ["wal-verify", "integrity", "timeline", "--json"],
    "wal-show": ["wal-show", "--detailed-json"],
    "st": ["st", "ls", "-r", "wal_005/"],
}


def raising(exc: BaseException) -> Callable[[str], CommandRunner]:
    """A command loader whose every command raises ``exc``."""

    def run(args: argparse.Namespace, settings: Any) -> int:
        raise exc

    return lambda name: run


def test_sample_argv_covers_every_command() -> None:
    """The table of sample command lines names every command the CLI declares."""
    assert list(SAMPLE_ARGV) == [command.name for command in COMMANDS]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` exits 0 and lists each command with its one-line description."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command.name in out
        assert command.help in out


def test_installed_script_help_lists_every_command(
    venv_bin: Path, clean_env: dict[str, str]
) -> None:
    """The installed ``wal-g`` script prints the same command list and exits 0."""
    script = venv_bin / "wal-g"
    assert script.exists(), f"{script} is missing: run `pip install -e .` in this venv"
    done = subprocess.run(
        [str(script), "--help"], env=clean_env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, untimed(done.stderr)
    for command in COMMANDS:
        assert command.name in done.stdout
    assert untimed(done.stderr) == ""


def test_python_dash_m_walg_prints_version(venv_bin: Path, clean_env: dict[str, str]) -> None:
    """``python -m walg --version`` behaves like ``wal-g --version``."""
    done = subprocess.run(
        [str(venv_bin / "python"), "-m", "walg", "--version"],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, f"wal-g (walg) {__version__}\n")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints ``wal-g (walg) <version>`` and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"wal-g (walg) {__version__}\n"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits 2 with argparse's usage message."""
    assert main(["frobnicate"]) == 2
    err = untimed(capsys.readouterr().err)
    assert "usage: wal-g" in err
    assert "invalid choice: 'frobnicate'" in err


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Running ``wal-g`` with no command exits 2 and says a command is required."""
    assert main([]) == 2
    assert "required: COMMAND" in untimed(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv",
    [
        ["backup-fetch"],
        ["backup-fetch", "/tmp/restore", "LATEST", "extra"],
        ["delete"],
        ["delete", "retain", "0"],
        ["delete", "retain", "SOME", "3"],
        ["wal-push", "a", "b"],
        ["backup-push", "/data", "--delta-from-name"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    """Missing, extra or malformed arguments exit 2 before any configuration is read."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["delete", "retain", "5"], {"modifier": None, "count": 5, "confirm": False}),
        (["delete", "retain", "FIND_FULL", "2"], {"modifier": "FIND_FULL", "count": 2}),
        (["delete", "before", "base_000000010000000000000004"], {"modifier": None}),
        (["delete", "before", "FIND_FULL", "2024-01-31T23:59:59Z", "--confirm"], {"confirm": True}),
        (["delete", "everything", "FORCE", "--confirm"], {"modifier": "FORCE"}),
        (["delete", "target", "base_000000010000000000000004"], {"modifier": None}),
        (["delete", "garbage"], {"modifier": None, "confirm": False}),
        (["delete", "garbage", "ARCHIVES"], {"modifier": "ARCHIVES"}),
        (["backup-push", "/data", "--full", "--permanent"], {"full": True, "permanent": True}),
        (["backup-push", "/data", "--delta-from-name", "base_1"], {"delta_from_name": "base_1"}),
        (["backup-mark", "-i", "base_1"], {"backup_name": "base_1", "impermanent": True}),
        (["backup-list", "--json", "--pretty"], {"json": True, "pretty": True, "detail": False}),
    ],
)
def test_wal_g_argument_forms_parse(argv: list[str], expected: dict[str, object]) -> None:
    """WAL-G's spellings of each command's arguments parse into the expected values."""
    args = vars(build_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_delete_help_lists_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    """``wal-g delete --help`` lists retain, before, everything, target and garbage."""
    assert main(["delete", "--help"]) == 0
    out = capsys.readouterr().out
    for mode in DELETE_MODES:
        assert mode.name in out
        assert mode.help in out


def test_arguments_reach_the_command(walg_env: dict[str, str]) -> None:
    """The command's runner receives the parsed arguments and its return value is the exit code."""
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace, settings: Any) -> int:
        seen.append(args)
        return 0

    argv = ["delete", "retain", "FULL", "3", "--confirm"]
    assert main(argv, environ=walg_env, load_command=lambda name: run) == 0
    args = seen[0]
    assert (args.command, args.delete_mode, args.modifier, args.count) == (
        "delete",
        "retain",
        "FULL",
        3,
    )
    assert args.confirm is True


def test_walg_error_prints_error_and_hint(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A WalgError becomes ERROR/HINT lines on stderr and its own exit code, no traceback."""
    error = ObjectNotFound("WAL segment 000000010000000000000009 is not in storage", hint="h1")
    code = main(SAMPLE_ARGV["wal-fetch"], environ=walg_env, load_command=raising(error))
    captured = capsys.readouterr()
    assert code == 74
    assert untimed(captured.err) == (
        "ERROR: WAL segment 000000010000000000000009 is not in storage\nHINT: h1\n"
    )
    assert captured.out == ""


def test_walg_error_without_hint_prints_only_error(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An error with an empty hint prints no HINT line."""
    code = main(SAMPLE_ARGV["wal-push"], environ=walg_env, load_command=raising(WalgError("x")))
    assert code == 1
    assert untimed(capsys.readouterr().err) == "ERROR: x\n"


def test_walg_error_with_devel_prints_traceback(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With WALG_LOG_LEVEL=DEVEL the traceback comes first, then the ERROR and HINT lines."""
    env = {**walg_env, "WALG_LOG_LEVEL": "DEVEL"}
    error = ObjectNotFound("no such backup", hint="run wal-g backup-list")
    code = main(SAMPLE_ARGV["backup-fetch"], environ=env, load_command=raising(error))
    err = untimed(capsys.readouterr().err)
    assert code == 74
    assert "Traceback (most recent call last)" in err
    assert "walg.errors.ObjectNotFound: no such backup" in err
    assert err.endswith("ERROR: no such backup\nHINT: run wal-g backup-list\n")


def test_internal_error(walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """An unexpected exception prints the internal-error line and a hint, exits 1, no traceback."""
    code = main(
        SAMPLE_ARGV["backup-list"], environ=walg_env, load_command=raising(KeyError("spam"))
    )
    err = untimed(capsys.readouterr().err)
    assert code == 1
    assert err.startswith("ERROR: internal error: KeyError: 'spam'\nHINT: ")
    assert "WALG_LOG_LEVEL=DEVEL" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("error", "line", "hint"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/pgdata/secret"),
         "ERROR: Permission denied: /pgdata/secret", "permissions"),
        (OSError(errno.ENOSPC, "No space left on device", "/restore/base/1/1259"),
         "ERROR: No space left on device: /restore/base/1/1259", "free space"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"),
         "ERROR: Read-only file system: /mnt/ro/x", "read-only"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"),
         "ERROR: Invalid cross-device link: /a -> /b", "check the path"),
    ],
)
def test_os_error_is_the_environment_not_a_bug(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str],
    error: OSError, line: str, hint: str,
) -> None:
    """An OSError reaching the CLI is one line naming the path, an errno hint, exit 1."""
    code = main(SAMPLE_ARGV["backup-fetch"], environ=walg_env, load_command=raising(error))
    err = untimed(capsys.readouterr().err)
    assert code == 1
    assert err.splitlines()[0] == line
    assert err.splitlines()[1].startswith("HINT: ") and hint in err.splitlines()[1]
    assert "internal error" not in err and "bug" not in err and len(err.splitlines()) == 2


def test_os_error_from_a_descriptor_gets_its_path(tmp_path: Path) -> None:
    """fsutil.naming gives an OSError raised on a file descriptor the file's path."""
    from walg.fsutil import naming

    with pytest.raises(OSError) as caught, naming(str(tmp_path / "f")):
        os.write(-1, b"x")  # EBADF, raised without a file name
    assert caught.value.filename == str(tmp_path / "f")
    assert caught.value.errno == errno.EBADF


def test_internal_error_with_devel_prints_traceback(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With WALG_LOG_LEVEL=DEVEL an internal error also prints its traceback."""
    env = {**walg_env, "WALG_LOG_LEVEL": "DEVEL"}
    code = main(SAMPLE_ARGV["backup-list"], environ=env, load_command=raising(ValueError("v")))
    err = untimed(capsys.readouterr().err)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "ERROR: internal error: ValueError: v\n" in err


def test_keyboard_interrupt_exits_130(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during a command exits 130 with one line and no traceback."""
    code = main(
        SAMPLE_ARGV["backup-push"], environ=walg_env, load_command=raising(KeyboardInterrupt())
    )
    assert code == 130
    assert untimed(capsys.readouterr().err) == "ERROR: interrupted\n"


def test_malformed_setting_is_a_config_error(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed setting exits 2 with an ERROR naming the variable, before the command runs."""
    env = {**walg_env, "WALG_UPLOAD_CONCURRENCY": "abc"}
    code = main(SAMPLE_ARGV["wal-push"], environ=env, load_command=raising(AssertionError()))
    err = untimed(capsys.readouterr().err)
    assert code == ConfigError.exit_code == 2
    assert err.startswith("ERROR: ")
    assert "WALG_UPLOAD_CONCURRENCY" in err
    assert "HINT: " in err
    assert "Traceback" not in err


def test_config_error_with_devel_prints_traceback(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """WALG_LOG_LEVEL=DEVEL shows tracebacks even for errors raised while reading settings."""
    env = {**walg_env, "WALG_LOG_LEVEL": "devel", "WALG_UPLOAD_CONCURRENCY": "abc"}
    code = main(SAMPLE_ARGV["wal-push"], environ=env, load_command=raising(AssertionError()))
    err = untimed(capsys.readouterr().err)
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert "walg.errors.ConfigError" in err


def test_missing_config_file_is_a_config_error(
    walg_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config`` naming a file that does not exist exits 2 with an ERROR naming the file."""
    missing = tmp_path / "nope.json"
    argv = ["--config", str(missing), *SAMPLE_ARGV["wal-push"]]
    code = main(argv, environ=walg_env, load_command=raising(AssertionError()))
    assert code == 2
    assert "nope.json" in untimed(capsys.readouterr().err)


def test_full_with_delta_from_name_is_refused(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """backup-push --full --delta-from-name is a contradiction: exit 2 before any work,
    rather than silently dropping one of the two flags."""
    argv = ["backup-push", "/nonexistent/pgdata", "--full", "--delta-from-name", "base_1"]
    assert main(argv, environ=walg_env) == 2
    err = untimed(capsys.readouterr().err)
    assert err.startswith("ERROR: --full and --delta-from-name contradict each other")


def full_parse(argv: list[str]) -> dict[str, object] | int:
    """What argparse makes of ``argv``: its values, or the exit status of help or an error."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return vars(build_parser().parse_args(hoist_global_options(argv)))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1


@pytest.mark.parametrize(
    "argv",
    [
        SAMPLE_ARGV["wal-push"],
        SAMPLE_ARGV["wal-fetch"],
        ["--config", "/etc/walg.json", "wal-push", "pg_wal/000000010000000000000001"],
        ["--config=/etc/walg.json", "wal-fetch", "--no-prefetch", "n", "d"],
        ["--config", "a", "--config", "b", "wal-push", "p"],
        ["wal-fetch", "n", "--no-prefetch", "d"],
        ["wal-fetch", "n", "d", "--no-prefetch"],
        ["wal-push", "--", "-strange-name"],
        ["wal-fetch", "--no-prefetch", "--", "-n", "--no-prefetch"],
        ["wal-push", "p", "--"],
        ["wal-push", ""],
    ],
)
def test_wal_command_lines_are_read_by_hand_as_argparse_reads_them(argv: list[str]) -> None:
    """The command lines archive_command and restore_command use skip argparse and give the
    very values argparse gives."""
    lean = lean_args(argv)
    assert lean is not None
    assert vars(lean) == full_parse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["wal-push", "--help"],
        ["--help", "wal-push", "p"],
        ["wal-push"],
        ["wal-push", "a", "b"],
        ["--conf", "f", "wal-push", "a"],
        ["wal-fetch", "--no", "n", "d"],
        ["wal-fetch", "n"],
        ["wal-push", "-1"],
        ["--config", "-f", "wal-push", "a"],
        ["wal-push", "--", "--", "a"],
        ["backup-list"],
    ],
)
def test_other_command_lines_go_to_argparse(argv: list[str]) -> None:
    """Help, abbreviations, usage errors and other commands are left to argparse, so its
    messages and exit codes stay as they were."""
    assert lean_args(argv) is None


WORDS = st.sampled_from(
    ["wal-push", "wal-fetch", "backup-list", "--config", "--config=f", "--config=", "--conf",
     "--config=-x", "--no-prefetch", "--no", "--no-prefetch=1", "--", "-", "-h", "--help",
     "--version", "-x", "-1", "a", "b", "", " -a b", "wal-push"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=7))
def test_lean_parser_never_disagrees_with_argparse(argv: list[str]) -> None:
    """Whatever the hand parser accepts, argparse accepts too, with the same values."""
    lean = lean_args(argv)
    if lean is not None:
        assert vars(lean) == full_parse(argv)


def test_lean_commands_are_the_grammar_s() -> None:
    """The hand parser's commands import the same modules as the full parser's."""
    modules = {command.name: command.module for command in COMMANDS}
    assert {name: module for name, (module, _) in LEAN_COMMANDS.items()} == {
        name: modules[name] for name in LEAN_COMMANDS
    }


def test_wal_fetch_arguments_reach_the_command(walg_env: dict[str, str]) -> None:
    """A hand-read wal-fetch line reaches its runner with argparse's attribute names."""
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace, settings: Any) -> int:
        seen.append(args)
        return 0

    argv = ["wal-fetch", "--no-prefetch", "000000010000000000000001", "pg_wal/RECOVERYXLOG"]
    assert main(argv, environ=walg_env, load_command=lambda name: run) == 0
    args = seen[0]
    assert (args.command, args.wal_name, args.destination, args.no_prefetch, args.config) == (
        "wal-fetch",
        "000000010000000000000001",
        "pg_wal/RECOVERYXLOG",
        True,
        None,
    )


# -- WAL-G's command-line habits (issue 17) -------------------------------------------------


def recorded(argv: list[str], env: dict[str, str]) -> tuple[argparse.Namespace, Any]:
    """The arguments and settings ``wal-g argv`` hands its command (which only records)."""
    seen: list[tuple[argparse.Namespace, Any]] = []

    def run(args: argparse.Namespace, settings: Any) -> int:
        seen.append((args, settings))
        return 0

    assert main(argv, environ=env, load_command=lambda name: run) == 0
    return seen[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["delete", "--confirm", "retain", "5"], {"confirm": True, "count": 5}),
        (["delete", "--confirm", "--use-sentinel-time", "before", "base_1"],
         {"confirm": True, "use_sentinel_time": True, "target": "base_1"}),
        (["delete", "retain", "--confirm", "FULL", "5"], {"confirm": True, "modifier": "FULL"}),
        (["backup-fetch", "/d", "--reverse-unpack", "LATEST", "--skip-redundant-tars"],
         {"destination": "/d", "backup_name": "LATEST", "reverse_unpack": True,
          "skip_redundant_tars": True}),
        (["backup-fetch", "/d", "--target-user-data", '{"x": 1}'],
         {"backup_name": None, "target_user_data": '{"x": 1}'}),
        (["backup-fetch", "--config", "/c.json", "/d", "LATEST", "--turbo"],
         {"config": "/c.json", "turbo": True, "backup_name": "LATEST"}),
        (["backup-push"], {"pgdata": None}),
        (["backup-push", "--add-user-data", '{"a": 1}', "/data", "-v"],
         {"pgdata": "/data", "add_user_data": '{"a": 1}', "verify": True}),
        (["backup-push", "--delta-from-user-data", "x", "--without-files-metadata", "/d"],
         {"delta_from_user_data": "x", "without_files_metadata": True}),
        (["backup-push", "-s", "-r", "-c", "-b", "--target-storage", "default"],
         {"store_all_corrupt": True, "rating_composer": True, "copy_composer": True,
          "database_composer": True, "target_storage": "default"}),
        (["wal-verify", "--json", "integrity", "timeline"],
         {"checks": ["integrity", "timeline"], "json": True}),
        (["--turbo=false", "backup-list"], {"turbo": False}),
        (["backup-list", "--turbo=1"], {"turbo": True}),
    ],
)  # fmt: skip
def test_flags_before_or_after_positional_words(
    argv: list[str], expected: dict[str, object]
) -> None:
    """As cobra: a command's flags go before, between or after its words, global flags
    (--config, --turbo) anywhere, delete's --confirm and --use-sentinel-time before the
    mode too; every WAL-G flag of these commands parses."""
    args = full_parse(argv)
    assert isinstance(args, dict), args
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize("argv", [["-v"], ["--version"]])
def test_short_version_flag(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``wal-g -v`` prints the version, as cobra's default version flag."""
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wal-g (walg) {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["help"], "commands:"), (["help", "backup-push"], "--add-user-data"),
     (["help", "delete", "retain"], "--use-sentinel-time"),
     (["help", "nonsense"], "commands:")],
)  # fmt: skip
def test_help_command(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``wal-g help [COMMAND]`` prints that help and exits 0, without reading settings
    (cobra's help command; an unknown topic is said, then the general help)."""
    assert main(argv, environ={"WALG_UPLOAD_CONCURRENCY": "bad"}) == 0
    captured = capsys.readouterr()
    assert words in captured.out
    assert ("Unknown help topic" in untimed(captured.err)) == (argv == ["help", "nonsense"])


def test_turbo_turns_rate_limits_off(walg_env: dict[str, str]) -> None:
    """--turbo (WAL-G: "ignore all kinds of throttling") drops both rate limits."""
    env = {**walg_env, "WALG_NETWORK_RATE_LIMIT": "1000", "WALG_DISK_RATE_LIMIT": "1000"}
    _, plain = recorded(["backup-list"], env)
    assert (plain.rate_limits.network, plain.rate_limits.disk) == (1000, 1000)
    for argv in (["--turbo", "backup-list"], ["backup-list", "--turbo"]):
        args, settings = recorded(argv, env)
        assert (settings.rate_limits.network, settings.rate_limits.disk) == (None, None)
        assert args.environ is None  # no background worker keeping the limits
    args, settings = recorded(["wal-push", "p", "--turbo"], env)
    assert settings.rate_limits.network is None and args.turbo


def test_wal_push_config_after_the_command_is_read_by_hand() -> None:
    """``wal-push %p --config F`` and ``wal-fetch --config F %f %p`` skip argparse."""
    for argv in (["wal-push", "p", "--config", "f"], ["wal-fetch", "--config=f", "n", "d"]):
        lean = lean_args(argv)
        assert lean is not None and lean.config == "f"
        assert vars(lean) == full_parse(argv)


def test_daemon_client_reads_config_after_the_command() -> None:
    """The daemon's fast path takes --config before or after the command word, and leaves
    --turbo and anything unusual to the full path."""
    from walg.wal.daemon_client import _command_args

    assert _command_args(["wal-push", "p", "--config", "f"]) == ("wal-push", ["p"], "f")
    assert _command_args(["wal-fetch", "--config=f", "n", "d"]) == ("wal-fetch", ["n", "d"], "f")
    assert _command_args(["--config", "f", "wal-push", "p"]) == ("wal-push", ["p"], "f")
    assert _command_args(["--turbo", "wal-push", "p"]) is None
    assert _command_args(["wal-push", "p", "--config", "f", "--config", "g"]) is None


def test_backup_push_without_pgdata_uses_pgdata_or_says_how(
    walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No PGDATA argument: the PGDATA setting; neither given: exit 2 with a hint."""
    from walg.commands.backup_push import _data_directory

    args = argparse.Namespace(pgdata=None)
    _, settings = recorded(["backup-list"], {**walg_env, "PGDATA": "/srv/pg"})
    assert _data_directory(args, settings) == "/srv/pg"
    assert main(["backup-push"], environ=walg_env) == 2
    err = untimed(capsys.readouterr().err)
    assert "ERROR: no data directory" in err and "HINT:" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["backup-push", "/d", "--delta-from-name", "a", "--delta-from-user-data", "b"],
         "both name a delta's base"),
        (["backup-push", "/d", "--without-files-metadata", "--delta-from-name", "a"],
         "cannot be used with"),
        (["backup-push", "/d", "--full", "--delta-from-user-data", "a"], "contradict"),
        (["backup-push", "/d", "--target-storage", "other"], "no failover storages"),
        (["backup-fetch", "/d", "LATEST", "--target-user-data", "{}"], "not both"),
        (["backup-fetch", "/d"], "no backup to restore"),
    ],
)  # fmt: skip
def test_contradicting_wal_g_flags_are_refused_before_any_work(
    argv: list[str], words: str, walg_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Flag combinations WAL-G refuses are refused with one ERROR line (exit 2), never
    argparse's usage exit."""
    assert main(argv, environ=walg_env) == 2
    err = untimed(capsys.readouterr().err)
    assert err.startswith("ERROR: ") and words in err
    assert "usage:" not in err


def test_ignored_push_flags_warn_in_one_line(
    walg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--without-files-metadata and the composer flags are accepted with one warning line
    each saying why; --without-files-metadata and --copy-composer take a full backup."""
    from structlog.testing import capture_logs

    from walg.commands import backup_push

    for flag, full in (("--without-files-metadata", True), ("--copy-composer", True),
                       ("--rating-composer", False), ("--store-all-corrupt", False)):
        args, settings = recorded(["backup-push", "/d", flag], walg_env)
        with capture_logs() as logs:
            assert backup_push._delta_choice(args, settings) == (full, None)
        assert len(logs) == 1 and logs[0]["log_level"] == "warning", flag
        assert flag in logs[0]["event"]


def test_user_data_values_match_as_wal_g_compares_them() -> None:
    """UserData selection compares JSON values deeply, numbers by value, booleans apart."""
    from walg.backup.catalog import _same_json

    assert _same_json({"a": [1, "x"]}, {"a": [1.0, "x"]})
    assert not _same_json({"a": True}, {"a": 1})
    assert not _same_json({"a": 1}, {"a": 1, "b": 2})
    assert _same_json("text", "text") and not _same_json("1", 1)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["wal-push", "pg_wal/x", "--pg-ready-rename=true"], True),
        (["wal-push", "--pg-ready-rename", "pg_wal/x"], True),
        (["wal-push", "pg_wal/x", "--pg-ready-rename=false"], False),
        (["wal-push", "pg_wal/x"], False),
    ],
)
def test_wal_push_accepts_pg_ready_rename(argv: list[str], flag: bool) -> None:
    """WAL-G's ``--pg-ready-rename[=BOOL]`` (its scripts put it in archive_command) parses,
    with pflag's ``=BOOL`` syntax, and never exits 2; the command only warns about it."""
    args = full_parse(argv)
    assert isinstance(args, dict), args
    assert args["wal_path"] == "pg_wal/x" and args["pg_ready_rename"] is flag


def test_daemon_client_passes_pg_ready_rename_over() -> None:
    """A call with --pg-ready-rename is still handed to the background worker or daemon."""
    from walg.wal.daemon_client import _command_args

    parsed = _command_args(["wal-push", "pg_wal/x", "--pg-ready-rename=true"])
    assert parsed == ("wal-push", ["pg_wal/x"], "")
    assert _command_args(["wal-push", "pg_wal/x", "--pg-ready-rename=maybe"]) is None
