"""``wal-g st ls|stat|cat|get|put|rm|check``: WAL-G's storage tools (``cmd/common/st``).

Paths are relative to the storage prefix. Output and defaults are WAL-G's: ``ls`` prints
its table; ``cat`` writes the stored bytes unless ``--decrypt``/``--decompress``; ``get``
decrypts and decompresses unless ``--no-decrypt``/``--no-decompress``; ``put`` compresses
with WALG_COMPRESSION_METHOD and encrypts when a key is configured unless ``--no-compress``/
``--no-encrypt``; ``rm`` deletes an object or everything under a folder. A missing object
is a one-line error, exit 1 (as WAL-G's). The logic is :mod:`walg.backup.storage_tools`.

``ls --all-versions`` and ``rm --version-id ID|--all-versions`` act on object versions
(:mod:`walg.backup.storage_versions`); a storage that keeps none lists its current objects
with a warning, removes them as ``rm`` does, and refuses ``--version-id`` (exit 1).
``copy --from FILE --to FILE`` copies between two storages named by config files
(:mod:`walg.backup.storage_copy`). ``transfer`` moves objects between failover storages,
which walg does not have: it is accepted with WAL-G's grammar and fails with one line
naming WALG_FAILOVER_STORAGES (exit 1).

Also the grammar of these sub-commands (:func:`add_arguments`, used by ``walg.cli_parser``),
so this module imports nothing heavy at its top.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, BinaryIO, cast

from walg.errors import ConfigError, VersionsUnsupported, WalgError

if TYPE_CHECKING:
    from walg.config import Settings
    from walg.storage import Storage

__all__ = ["add_arguments", "run"]

_SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a Go wal-g reports when its reader went away


def _common(parser: argparse.ArgumentParser) -> None:
    """WAL-G's persistent flags of ``st``, accepted at every level (set only if given)."""
    parser.add_argument(
        "-t",
        "--target",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="storage to use: only 'default' (walg has no failover storages)",
    )
    parser.add_argument(
        "-g",
        "--glob",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the path is a glob pattern (ls, cat, rm)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``st``'s sub-commands and their flags on ``parser``."""
    _common(parser)
    subs = parser.add_subparsers(dest="st_command", metavar="TOOL", required=True)

    def tool(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = subs.add_parser(name, help=help_text, description=help_text)
        _common(sub)
        return sub

    ls = tool("ls", "print the objects and folders in a storage folder")
    ls.add_argument("path", metavar="PATH", nargs="?", default="", help="folder (default: root)")
    ls.add_argument("-r", "--recursive", action="store_true", help="list recursively")
    ls.add_argument(
        "--all-versions", action="store_true", help="every object version and delete marker"
    )
    tool("stat", "print one object's metadata as ls does").add_argument("path", metavar="PATH")
    cat = tool("cat", "write an object to stdout (as stored unless asked)")
    cat.add_argument("path", metavar="PATH")
    cat.add_argument("--decrypt", action="store_true", help="decrypt the object")
    cat.add_argument("--decompress", action="store_true", help="decompress the object")
    get = tool("get", "download an object (decrypted and decompressed unless asked not to)")
    get.add_argument("path", metavar="PATH")
    get.add_argument("destination", metavar="DEST", help="new local file, or a folder")
    get.add_argument("--no-decrypt", action="store_true", help="do not decrypt the object")
    get.add_argument("--no-decompress", action="store_true", help="do not decompress it")
    put = tool("put", "upload a file (compressed and encrypted unless asked not to)")
    put.add_argument("local", metavar="LOCAL_PATH")
    put.add_argument("destination", metavar="PATH", nargs="?")
    put.add_argument("--no-encrypt", action="store_true", help="do not encrypt the object")
    put.add_argument("--no-compress", action="store_true", help="do not compress the object")
    put.add_argument("-f", "--force", action="store_true", help="overwrite an existing object")
    put.add_argument(
        "-s",
        "--read-stdin",
        action="store_true",
        help="read the content from stdin (then only PATH is given)",
    )
    rm = tool("rm", "remove an object, or every object under a folder")
    rm.add_argument("prefix", metavar="PATH")
    rm.add_argument("--all-versions", action="store_true", help="remove every version for good")
    rm.add_argument("--version-id", metavar="ID", help="remove this version of the object")
    _copy_arguments(tool("copy", "copy objects from one storage to another (two config files)"))
    _transfer_arguments(tool("transfer", "move objects from a failover storage (not in walg)"))
    check = tool("check", "check access to the storage")
    modes = check.add_subparsers(dest="check_mode", metavar="MODE", required=True)
    read = modes.add_parser("read", help="list the storage; check that the files exist")
    _common(read)
    read.add_argument("names", metavar="FILE", nargs="*", help="files that must exist")
    _common(modes.add_parser("write", help="write and delete a small object"))


def _copy_arguments(copy: argparse.ArgumentParser) -> None:
    copy.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        required=True,
        help="config file of the storage to copy from",
    )
    copy.add_argument(
        "--to",
        dest="to_file",
        metavar="FILE",
        required=True,
        help="config file of the storage to copy to",
    )
    copy.add_argument("-p", "--prefix", default="", help="copy only keys starting with this")
    copy.add_argument(
        "-d", "--decrypt-source", action="store_true", help="decrypt with this command's own key"
    )
    copy.add_argument(
        "-e",
        "--encrypt-source",
        action="store_true",
        help="encrypt with the key of the --to config file",
    )


def _transfer_arguments(transfer: argparse.ArgumentParser) -> None:
    """WAL-G's grammar of ``st transfer files PREFIX|pg-wals|backups`` (accepted, refused)."""

    def flags(parser: argparse.ArgumentParser) -> None:
        s = argparse.SUPPRESS
        parser.add_argument("-s", "--source", metavar="NAME", default=s)
        for flag in ("-o", "--overwrite"), ("-p", "--preserve"), ("--fail-fast",):
            parser.add_argument(*flag, action="store_true", default=s)
        for flag in ("-c", "--concurrency"), ("-m", "--max-files"), ("--appearance-checks",):
            parser.add_argument(*flag, type=int, metavar="N", default=s)
        parser.add_argument("--appearance-checks-interval", metavar="DURATION", default=s)

    flags(transfer)
    kinds = transfer.add_subparsers(dest="transfer_kind", metavar="KIND", required=True)
    for kind in ("files", "pg-wals", "backups"):
        sub = kinds.add_parser(kind, help=f"move {kind} (needs a failover storage)")
        _common(sub)
        flags(sub)
        if kind == "files":
            sub.add_argument("prefix", metavar="PREFIX")
        if kind == "backups":
            sub.add_argument("--max-backups", type=int, metavar="N", default=argparse.SUPPRESS)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the storage tool ``args.st_command``."""
    if args.st_command == "transfer":
        raise WalgError(
            "st transfer moves objects between a failover storage and the primary one, and "
            "walg has one storage (WALG_FAILOVER_STORAGES is not supported)",
            "to copy objects between two storages, name each in its own config file: "
            "wal-g st copy --from FROM.json --to TO.json",
        )
    if args.st_command == "copy":
        return _copy(settings, args)
    target = getattr(args, "target", "default")
    if target != "default":
        raise ConfigError(
            f"storage {target!r} is not supported by walg: it has one storage, no failover "
            "storages (WALG_FAILOVER_STORAGES is not supported)",
            "leave out --target, or use --target=default",
        )
    from walg.storage import open_storage

    storage = open_storage(settings)
    tool = args.st_command
    if tool != "put":  # put creates the folder, as WAL-G's does
        storage.check_present()  # a missing file storage folder is an error, not an empty one
    if getattr(args, "glob", False) and tool not in ("ls", "cat", "rm"):
        raise ConfigError(f"--glob is not supported by 'st {tool}'", "give the path itself")
    if tool == "ls":
        return _ls(storage, settings, args)
    if tool == "stat":
        return _stat(storage, settings, args.path)
    if tool == "cat":
        return _cat(storage, settings, args)
    if tool == "get":
        return _get(storage, settings, args)
    if tool == "put":
        return _put(storage, settings, args)
    if tool == "rm":
        return _rm(storage, args)
    return _check(storage, args)


def _local_times(settings: Settings) -> bool:
    """WAL-G prints a file's mtime in the local zone, a cloud object's in UTC."""
    return settings.require_storage().kind == "file"


def _ls(storage: Storage, settings: Settings, args: argparse.Namespace) -> int:
    from walg.backup import storage_tools as st

    local = _local_times(settings)
    versions = args.all_versions

    def entries(folder: str) -> list[st.ListEntry]:
        nonlocal versions
        if versions:
            from walg.backup.storage_versions import version_entries

            try:
                return version_entries(storage, folder, args.recursive)
            except VersionsUnsupported as err:
                _warn(f"{err.msg}: --all-versions lists the current objects")
                versions = False
        return st.list_entries(storage, folder, args.recursive)

    if not getattr(args, "glob", False):
        sys.stdout.write(st.format_listing(entries(args.path), local))
        return 0
    for folder in st.glob(storage, args.path)[1]:
        sys.stdout.write(f"{storage.url.rstrip('/')}/{folder.lstrip('/')}:\n")
        sys.stdout.write(st.format_listing(entries(folder), local))
        sys.stdout.write("\n")
    return 0


def _warn(message: str) -> None:
    from walg.logs import get_logger

    get_logger("walg.st").warning(message)


def _stat(storage: Storage, settings: Settings, path: str) -> int:
    from walg.backup import storage_tools as st
    from walg.errors import ObjectNotFound
    from walg.storage.base import check_key

    key = check_key(path.strip("/"))
    try:
        info = storage.stat_object(key)
    except ObjectNotFound:
        raise st.missing(storage, key) from None
    entry = st.ListEntry("obj", info.size, info.modified, key)
    sys.stdout.write(st.format_listing([entry], _local_times(settings)))
    return 0


def _cat(storage: Storage, settings: Settings, args: argparse.Namespace) -> int:
    from walg.backup import storage_tools as st
    from walg.sizes import CHUNK

    keys = st.glob(storage, args.path)[0] if getattr(args, "glob", False) else [args.path]
    out = sys.stdout.buffer
    try:
        for key in keys:
            with st.open_object(
                storage,
                key,
                decrypt=args.decrypt,
                decompress=args.decompress,
                crypto=settings.crypto,
            ) as data:
                while chunk := data.read(CHUNK):
                    out.write(chunk)
        out.flush()
    except BrokenPipeError:  # `wal-g st cat x | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _SIGPIPE_EXIT
    return 0


def _get(storage: Storage, settings: Settings, args: argparse.Namespace) -> int:
    from walg.backup import storage_tools as st

    target = args.destination
    if os.path.isdir(target):
        target = os.path.join(target, os.path.basename(args.path.rstrip("/")))
    if os.path.lexists(target):
        raise WalgError(
            f"destination {target} already exists",
            "st get writes a new file: remove it or name another path",
        )
    with st.open_object(
        storage,
        args.path,
        decrypt=not args.no_decrypt,
        decompress=not args.no_decompress,
        crypto=settings.crypto,
    ) as data:
        st.write_local(target, data)
    return 0


def _put(storage: Storage, settings: Settings, args: argparse.Namespace) -> int:
    from walg.backup import storage_tools as st

    if args.read_stdin == (args.destination is not None):
        what = "only PATH with -s/--read-stdin" if args.read_stdin else "LOCAL_PATH and PATH"
        raise ConfigError(
            f"st put takes {what}", "wal-g st put LOCAL_PATH PATH, or wal-g st put -s PATH"
        )
    method = None if args.no_compress else settings.compression.method
    crypter = None
    if not args.no_encrypt and settings.crypto.enabled:
        from walg.crypto import Crypter

        crypter = Crypter(settings.crypto).open()
    try:
        if args.read_stdin:
            source = cast(BinaryIO, sys.stdin.buffer)
            destination = args.local
        else:
            if os.path.isdir(args.local):
                raise WalgError(
                    f"provided local path ({args.local}) points to a directory",
                    "st put uploads one file",
                )
            source = cast(BinaryIO, open(args.local, "rb"))  # noqa: SIM115 - closed below
            destination = args.destination
        with source:
            st.put_object(
                storage, source, destination, method=method, crypter=crypter, overwrite=args.force
            )
    finally:
        if crypter is not None:
            crypter.close()
    return 0


def _rm(storage: Storage, args: argparse.Namespace) -> int:
    from walg.backup import storage_tools as st
    from walg.backup import storage_versions as sv

    glob = getattr(args, "glob", False)
    if args.version_id is not None:
        other = "--all-versions" if args.all_versions else "--glob" if glob else None
        if other is not None:
            raise WalgError(
                f"--version-id cannot be used together with {other}",
                "remove one version of one object at a time",
            )
        sv.remove_version(storage, args.prefix, args.version_id)
        return 0
    paths = [args.prefix]
    if glob:
        objects, folders = st.glob(storage, args.prefix)
        paths = objects + folders
    for path in paths:
        if args.all_versions:
            try:
                sv.remove_all_versions(storage, path)
                continue
            except VersionsUnsupported as err:
                _warn(f"{err.msg}: --all-versions removes the current objects")
                args.all_versions = False
        st.remove(storage, path)
    return 0


def _copy(settings: Settings, args: argparse.Namespace) -> int:
    """Each storage from its config file alone (as WAL-G reads them: not the environment)."""
    from walg import config
    from walg.backup.storage_copy import copy_objects
    from walg.crypto import Crypter
    from walg.storage import open_storage

    source = open_storage(config.load({}, config_file=args.from_file))
    to_settings = config.load({}, config_file=args.to_file)
    target = open_storage(to_settings)
    decrypt = settings.crypto if args.decrypt_source and settings.crypto.enabled else None
    crypter = None
    if args.encrypt_source and to_settings.crypto.enabled:
        crypter = Crypter(to_settings.crypto).open()
    try:
        copy_objects(source, target, args.prefix, decrypt=decrypt, crypter=crypter)
    finally:
        if crypter is not None:
            crypter.close()
    return 0


def _check(storage: Storage, args: argparse.Namespace) -> int:
    from walg.backup import storage_tools as st
    from walg.logs import get_logger

    log = get_logger("walg.st")
    if args.check_mode == "read":
        st.check_read(storage, args.names)
        log.info("Read check OK")
    else:
        st.check_write(storage)
        log.info("Write check OK")
    return 0
