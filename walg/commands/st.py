"""``wal-g st ls|stat|cat|get|put|rm|check``: WAL-G's storage tools (``cmd/common/st``).

Paths are relative to the storage prefix. Output and defaults are WAL-G's: ``ls`` prints
its table; ``cat`` writes the stored bytes unless ``--decrypt``/``--decompress``; ``get``
decrypts and decompresses unless ``--no-decrypt``/``--no-decompress``; ``put`` compresses
with WALG_COMPRESSION_METHOD and encrypts when a key is configured unless ``--no-compress``/
``--no-encrypt``; ``rm`` deletes an object or everything under a folder. A missing object
is a one-line error, exit 1 (as WAL-G's). The logic is :mod:`walg.backup.storage_tools`.

Also the grammar of these sub-commands (:func:`add_arguments`, used by ``walg.cli_parser``),
so this module imports nothing heavy at its top.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, BinaryIO, cast

from walg.errors import ConfigError, WalgError

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
    check = tool("check", "check access to the storage")
    modes = check.add_subparsers(dest="check_mode", metavar="MODE", required=True)
    read = modes.add_parser("read", help="list the storage; check that the files exist")
    _common(read)
    read.add_argument("names", metavar="FILE", nargs="*", help="files that must exist")
    _common(modes.add_parser("write", help="write and delete a small object"))


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the storage tool ``args.st_command``."""
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
    if getattr(args, "glob", False) and tool not in ("ls", "cat", "rm"):
        raise ConfigError(f"--glob is not supported by 'st {tool}'", "give the path itself")
    if tool == "ls":
        return _ls(storage, settings, args.path, args.recursive, getattr(args, "glob", False))
    if tool == "stat":
        return _stat(storage, settings, args.path)
    if tool == "cat":
        return _cat(storage, settings, args)
    if tool == "get":
        return _get(storage, settings, args)
    if tool == "put":
        return _put(storage, settings, args)
    if tool == "rm":
        return _rm(storage, args.prefix, getattr(args, "glob", False))
    return _check(storage, args)


def _local_times(settings: Settings) -> bool:
    """WAL-G prints a file's mtime in the local zone, a cloud object's in UTC."""
    return settings.require_storage().kind == "file"


def _ls(storage: Storage, settings: Settings, path: str, recursive: bool, glob: bool) -> int:
    from walg.backup import storage_tools as st

    local = _local_times(settings)
    if not glob:
        sys.stdout.write(st.format_listing(st.list_entries(storage, path, recursive), local))
        return 0
    for folder in st.glob(storage, path)[1]:
        sys.stdout.write(f"{storage.url.rstrip('/')}/{folder.lstrip('/')}:\n")
        sys.stdout.write(st.format_listing(st.list_entries(storage, folder, recursive), local))
        sys.stdout.write("\n")
    return 0


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


def _rm(storage: Storage, prefix: str, glob: bool) -> int:
    from walg.backup import storage_tools as st

    if not glob:
        st.remove(storage, prefix)
        return 0
    objects, folders = st.glob(storage, prefix)
    for path in objects + folders:
        st.remove(storage, path)
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
