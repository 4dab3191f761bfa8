"""The ``wal-g`` command line: argument parsing, dispatch, and exit codes.

``main`` is the one place in walg where exceptions become exit codes and printed lines.
Everything else raises (see :mod:`walg.errors`).

Commands are dispatched lazily: the parser knows every command's arguments, but a
command's module ``walg.commands.<name>`` (with ``-`` spelled ``_``) is imported only when
that command runs. Heavy libraries (boto3, google-cloud-storage, gnupg, psycopg2, even
structlog) are therefore never loaded by ``wal-g --help`` or by a command that does not
need them; ``tests/unit/test_lazy_imports.py`` keeps it that way.

``wal-push`` and ``wal-fetch`` run once per WAL segment, so their usual command lines are
read by hand (:func:`lean_args`) without argparse and the grammar's module; anything
else (help, a usage error, an abbreviated option) goes to the full parser, whose messages
and exit codes are therefore unchanged.
"""

from __future__ import annotations

import os
import sys

from walg.errors import EX_GENERAL, EX_INTERRUPTED, WalgError, local_file_error

TYPE_CHECKING = False  # not typing's: typing and collections cost ~5 ms on every call
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any

    from walg.cli_parser import CommandLoader, CommandRunner
    from walg.config import Settings

__all__ = ["main"]  # the grammar's names are still importable from here (see __getattr__)

_GRAMMAR = {"COMMANDS", "DELETE_MODES", "PROG", "Command", "CommandLoader", "CommandRunner",
            "build_parser", "import_command"}


def __getattr__(name: str) -> Any:
    """The command-line grammar lives in :mod:`walg.cli_parser`, loaded on first use."""
    if name in _GRAMMAR:
        from walg import cli_parser

        return getattr(cli_parser, name)
    raise AttributeError(f"module 'walg.cli' has no attribute {name!r}")


def _exit_status(code: object) -> int:
    """The exit status of a ``SystemExit`` code (None is success, a message is failure)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else EX_GENERAL


def _parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace | int:
    """Parse ``argv``; for ``--help``, ``--version`` and usage errors return the exit status."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed help, version or a usage error
        return _exit_status(exc.code)


#: The commands whose plain command lines :func:`lean_args` reads: their modules and the
#: names of their positional arguments (as :mod:`walg.cli_parser` declares them).
LEAN_COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wal-push": ("walg.commands.wal_push", ("wal_path",)),
    "wal-fetch": ("walg.commands.wal_fetch", ("wal_name", "destination")),
}


#: pflag's spellings of a boolean flag's value (Go's strconv.ParseBool).
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


#: Commands' boolean flags that WAL-G's scripts write as ``--flag=true`` (pflag's syntax):
#: read as the plain flag (true) or dropped (false).
GO_BOOL_FLAGS = frozenset({"--pg-ready-rename"})


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """``argv`` with WAL-G's global flags moved before the command word.

    cobra accepts its persistent flags anywhere: ``wal-g backup-fetch DIR LATEST --config F``
    is ``wal-g --config F backup-fetch DIR LATEST``. ``--config FILE``, ``--config=FILE`` and
    ``--turbo`` (``--turbo=false`` drops it, as pflag reads it) move to the front in their
    order, so the last ``--config`` still wins; nothing after ``--`` moves, nor a
    ``--config`` whose value looks like an option (argparse then reports it).
    """
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            rest += argv[index:]
            break
        if word == "--config" and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            front += argv[index : index + 2]
            index += 2
            continue
        flag, equals, value = word.partition("=")
        if word.startswith("--config=") or word == "--turbo":
            front.append(word)
        elif word.startswith("--turbo=") and word[8:] in _GO_BOOLS:
            front += ["--turbo"] if _GO_BOOLS[word[8:]] else []
        elif equals and flag in GO_BOOL_FLAGS and value in _GO_BOOLS:
            rest += [flag] if _GO_BOOLS[value] else []  # a command's own bool flag
        else:
            rest.append(word)
        index += 1
    return front + rest


def _lean_options(argv: Sequence[str]) -> tuple[str | None, bool, int] | None:
    """``--config FILE`` / ``--config=FILE`` / ``--turbo`` before the command: the file (the
    last one given, as argparse keeps it), whether --turbo was given, and the command word's
    index; None for any other option."""
    config, turbo, index = None, False, 0
    while index < len(argv) and argv[index].startswith("-"):
        word = argv[index]
        if word.startswith("--config="):
            config, index = word[len("--config=") :], index + 1
        elif word == "--config" and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            config, index = argv[index + 1], index + 2
        elif word == "--turbo":
            turbo, index = True, index + 1
        else:
            return None
    return config, turbo, index


def lean_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """``argv`` parsed as argparse would, if it is ``[--config FILE] wal-push PATH`` or
    ``[--config FILE] wal-fetch [--no-prefetch] NAME DEST`` (``--no-prefetch`` anywhere
    after the command, one ``--`` before the positional arguments that start with ``-``;
    ``--config FILE`` and ``--turbo`` anywhere before ``--``, see
    :func:`hoist_global_options`); None for every other command line, which the full
    parser then reads.

    Anything argparse might read differently falls back: another option or abbreviation,
    an argument starting with ``-`` before ``--``, a second ``--``, a wrong number of
    arguments. ``tests/unit/test_cli.py`` compares both parsers on generated command lines.
    """
    argv = hoist_global_options(argv)
    options = _lean_options(argv)
    if options is None or options[2] >= len(argv) or argv[options[2]] not in LEAN_COMMANDS:
        return None
    (config, turbo, index), command = options, argv[options[2]]
    rest = argv[index + 1 :]
    if rest.count("--") > 1:
        return None
    positional: list[str] = []
    no_prefetch = False
    for number, word in enumerate(rest):
        if word == "--":
            positional += rest[number + 1 :]
            break
        if word == "--no-prefetch" and command == "wal-fetch":
            no_prefetch = True
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    names = LEAN_COMMANDS[command][1]
    if len(positional) != len(names):
        return None
    from types import SimpleNamespace  # argparse.Namespace's attributes, without argparse

    values: dict[str, object] = {"config": config, "turbo": turbo, "command": command}
    values.update(zip(names, positional, strict=True))
    if command == "wal-fetch":
        values["no_prefetch"] = no_prefetch
    else:
        values["pg_ready_rename"] = False  # given, it makes argparse read the line
    namespace: argparse.Namespace = SimpleNamespace(**values)  # type: ignore[assignment]
    return namespace


def _import_lean_command(name: str) -> CommandRunner:
    """The ``run`` of a command in :data:`LEAN_COMMANDS` (without the grammar's module)."""
    module = __import__(LEAN_COMMANDS[name][0], fromlist=["run"])
    run: CommandRunner = module.run
    return run


def _devel_requested(environ: Mapping[str, str]) -> bool:
    """Whether tracebacks were asked for, for errors raised before the settings exist.

    Once ``walg.config.load`` has succeeded, ``settings.log.debug_tracebacks`` decides.
    """
    return environ.get("WALG_LOG_LEVEL", "").strip().upper() in ("DEVEL", "DEBUG")


def _load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings from ``environ`` over ``--config FILE`` (default: WAL-G's ~/.walg.json)."""
    from walg import config  # imported here so that --help and usage errors stay fast

    config_file = args.config or config.find_default_config_file(environ)
    settings = config.load(environ, config_file=config_file)
    if getattr(args, "turbo", False):  # WAL-G's --turbo: "ignore all kinds of throttling"
        from dataclasses import replace

        settings = replace(settings, rate_limits=config.RateLimitSettings())
    return settings


def _help(topic: Sequence[str]) -> int:
    """``wal-g help [COMMAND [MODE]]``, as cobra's: that command's help, exit 0; an unknown
    topic is said and the general help follows."""
    from walg.cli_parser import COMMANDS, build_parser

    names = {command.name for command in COMMANDS}
    if topic and topic[0] not in names:
        print(f"Unknown help topic {' '.join(topic)!r}", file=sys.stderr)
        topic = []
    return _exit_status(_parse_args(build_parser(), [*topic[:2], "--help"]))


def _dispatch(args: argparse.Namespace, settings: Settings, load_command: CommandLoader) -> int:
    from walg import logs  # structlog costs ~80 ms; only commands that run need it

    logs.configure(settings.log.level, fmt=settings.log.format)
    warnings = settings.config_warnings()
    if warnings:  # WAL-G warns about unknown settings too; the command still runs
        log = logs.get_logger()
        for line in warnings:
            log.warning(line)
    run = load_command(args.command)
    return run(args, settings)


def _traceback_text(err: BaseException) -> str:
    import traceback  # only when a traceback is asked for

    return "".join(traceback.format_exception(type(err), err, err.__traceback__))


def _report(fmt: str | None, msg: str, hint: str | None, err: BaseException | None) -> None:
    """Write ``msg`` and ``hint`` as the log lines do (WALG_LOG_FORMAT, text by default);
    with ``err``, its traceback before them (text) or inside the JSON object."""
    from walg import logs

    logs.set_format(fmt)
    logs.write_error(msg, hint, None if err is None else _traceback_text(err))


def _report_error(err: WalgError, debug: bool, fmt: str | None = None) -> int:
    """Print ``ERROR:``/``HINT:`` for an error walg raised on purpose; return its exit code."""
    _report(fmt, err.msg, err.hint, err if debug else None)
    return err.exit_code


def _with_cause(err: WalgError, cause: BaseException) -> WalgError:
    """``err`` with ``cause``'s traceback behind it, for WALG_LOG_LEVEL=DEVEL."""
    err.__cause__ = cause
    err.__traceback__ = cause.__traceback__
    return err


def _type_name(err: BaseException) -> str:
    cls = type(err)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _report_internal_error(err: Exception, debug: bool, fmt: str | None = None) -> int:
    """Print an unexpected exception as a bug report request; return 1."""
    if debug:
        hint = "this is a bug in walg; please report it with the traceback above"
    else:
        hint = "this is a bug in walg; re-run with WALG_LOG_LEVEL=DEVEL and report the traceback"
    _report(fmt, f"internal error: {_type_name(err)}: {err}", hint, err if debug else None)
    return EX_GENERAL


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    load_command: CommandLoader | None = None,
) -> int:
    """Run ``wal-g`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    ``environ`` defaults to ``os.environ``, read once here and handed to ``walg.config``.
    ``load_command`` maps a command name to its runner; tests pass a fake one.
    A failed ``wal-fetch`` (usage, settings, storage, anything) gets the exit code that
    stops PostgreSQL's recovery rather than ends it (:mod:`walg.wal.restore_exit`).
    """
    from walg.wal.restore_exit import restore_command_exit

    words = hoist_global_options(sys.argv[1:] if argv is None else argv)
    code = _main(words, environ=environ, load_command=load_command)
    return restore_command_exit(words, code)


def _main(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None,
    load_command: CommandLoader | None,
) -> int:
    """:func:`main`, before restore_command's exit codes."""
    # Fast path: with WALG_DAEMON_SOCKET set, `wal-push` goes to a running `wal-g daemon`
    # before the parser, the settings or the storage are loaded (None: push directly).
    from walg.wal.daemon_client import fast_path

    environ_now = os.environ if environ is None else environ
    code = fast_path(argv, environ_now)
    if code is not None:
        return code
    parsed = lean_args(argv)
    if parsed is not None:  # wal-push, wal-fetch: no argparse on the path of every segment
        load_command = load_command or _import_lean_command
    else:
        from walg.cli_parser import build_parser, import_command

        if argv[:1] == ["help"]:
            return _help(argv[1:])

        parsed_fully = _parse_args(build_parser(), argv)
        if isinstance(parsed_fully, int):
            return parsed_fully
        parsed, load_command = parsed_fully, load_command or import_command
    env = dict(os.environ if environ is None else environ)
    debug = _devel_requested(env)
    # The environment of a wal-g process of its own, for the background worker that
    # wal-push and wal-fetch start (walg.wal.background); None when main() runs in-process.
    # --turbo: this call alone, without a worker that would keep the configured limits.
    parsed.environ = env if environ is None and not getattr(parsed, "turbo", False) else None
    fmt = env.get("WALG_LOG_FORMAT")  # until the settings say (a config file may set it)
    try:
        settings = _load_settings(parsed, env)
        debug, fmt = settings.log.debug_tracebacks, settings.log.format
        return _dispatch(parsed, settings, load_command)
    except WalgError as err:
        return _report_error(err, debug, fmt)
    except KeyboardInterrupt:
        _report(fmt, "interrupted", None, None)
        return EX_INTERRUPTED
    except OSError as err:  # the user's environment (EACCES, ENOSPC, EROFS...), not a bug
        return _report_error(_with_cause(local_file_error(err), err), debug, fmt)
    except Exception as err:
        return _report_internal_error(err, debug, fmt)
