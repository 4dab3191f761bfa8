"""What ``wal-g st`` does to the archive, as WAL-G's storage tools do it
(``internal/storagetools``): list, read, write and remove objects by their keys relative to
the storage prefix, and check that the storage can be read and written.

Listings are printed as WAL-G prints them (Go's ``text/tabwriter`` over ``type``, ``size``,
``last modified`` as Go's ``time.Time.String()``, ``name``), so scripts that parse
``wal-g st ls`` keep working. Reads decrypt with the configured key and decompress by the
object's extension when asked; writes compress with WALG_COMPRESSION_METHOD and encrypt when
a key is configured, unless told not to.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import posixpath
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from walg.compression import (
    METHODS,
    compress_stream,
    extension,
    method_for_extension,
    open_decompressed,
)
from walg.errors import ObjectNotFound, StorageError, WalgError
from walg.logs import get_logger
from walg.sizes import CHUNK
from walg.storage.base import check_key

if TYPE_CHECKING:
    from walg.config.settings import CryptoSettings
    from walg.crypto import Crypter
    from walg.storage import Storage

__all__ = [
    "ListEntry",
    "check_read",
    "check_write",
    "format_listing",
    "glob",
    "go_time",
    "list_entries",
    "missing",
    "open_object",
    "put_object",
    "remove",
    "tabwrite",
    "write_local",
]

_log = get_logger("walg.st")
_GO_ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"


@dataclass(frozen=True)
class ListEntry:
    """One line of ``st ls``: ``obj`` or ``dir``, size, mtime (None for a folder), name;
    with ``--all-versions`` also the version ID and ``LATEST``/``DELETE`` (WAL-G's words)."""

    kind: str
    size: int
    modified: datetime | None
    name: str
    version: str = ""
    info: str = ""


def go_time(when: datetime | None, local: bool) -> str:
    """``when`` as Go's ``time.Time.String()`` prints it: ``2006-01-02 15:04:05.999999999
    -0700 MST``, in the local zone (WAL-G's file storage) or in UTC (its cloud storages)."""
    if when is None:
        return _GO_ZERO_TIME
    moment = when.astimezone() if local else when.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    offset = int(moment.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    zone = moment.tzname() if local else "UTC"
    return f"{moment:%Y-%m-%d %H:%M:%S}{fraction} {sign}{hours:02d}{minutes:02d} {zone}"


def tabwrite(lines: list[list[str]]) -> str:
    """``lines`` of cells as Go's ``tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)`` prints them
    when each cell but the last of a line ends with a tab: a column is as wide as its widest
    cell plus one, over each run of consecutive lines that have that (tab-ended) cell; a
    line's last cell is never padded."""
    widths: list[int] = []
    out: list[str] = []

    def write(first: int, end: int) -> None:
        for cells in lines[first:end]:
            padded = [
                cell + " " * (widths[j] - len(cell)) if j < len(widths) else cell
                for j, cell in enumerate(cells)
            ]
            out.append("".join(padded) + "\n")

    def layout(first: int, end: int) -> None:
        column = len(widths)
        this = first
        while this < end:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(first, this)
            first, width = this, 0
            while this < end and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + 1)
                this += 1
            widths.append(width)
            layout(first, this)
            widths.pop()
            first = this
        write(first, end)

    layout(0, len(lines))
    return "".join(out)


def format_listing(entries: list[ListEntry], local: bool) -> str:
    """``st ls`` output: WAL-G's header and one line per entry (with its two columns, object
    version and additional info, that only ``--all-versions`` fills)."""
    lines = [["type", "size", "last modified", "name"]]
    lines += [
        [e.kind, str(e.size), go_time(e.modified, local), e.name, e.version, e.info]
        for e in entries
    ]
    return tabwrite(lines)


def _folder_prefix(path: str) -> str:
    """A user's folder path as a listing prefix: "" for the root, else ``a/b/``."""
    path = path.strip("/")
    return check_key(path) + "/" if path else ""


def list_entries(storage: Storage, path: str, recursive: bool) -> list[ListEntry]:
    """The entries of ``st ls [-r] path``, in WAL-G's order: sub-folders (names ending with
    ``/``) then objects, each by name; recursively, objects only, folder by folder breadth
    first (a folder's own objects, then its sub-folders' in name order, level by level)."""
    prefix = _folder_prefix(path)
    if not recursive:
        listing = storage.list_folder(prefix)
        folders = [ListEntry("dir", 0, None, name + "/") for name in listing.folders]
        objects = [
            ListEntry("obj", o.size, o.modified, o.name[len(prefix) :]) for o in listing.objects
        ]
        return folders + objects
    found = [(o.name[len(prefix) :], o) for o in storage.list_objects(prefix)]

    def order(item: tuple[str, Any]) -> tuple[int, list[str], str]:
        *folders, name = item[0].split("/")
        return len(folders), [f + "/" for f in folders], name

    found.sort(key=order)
    return [ListEntry("obj", o.size, o.modified, name) for name, o in found]


def glob(storage: Storage, pattern: str) -> tuple[list[str], list[str]]:
    """Object keys and folder paths (ending with ``/``) matching ``pattern``, one pattern
    segment per folder level as WAL-G's ``--glob`` does (``*``, ``?``, ``[...]``)."""
    if pattern == "/":
        return [], ["/"]
    objects: list[str] = []
    folders: list[str] = []
    queue = [("", pattern.lstrip("/"))]
    while queue:
        folder, rest = queue.pop(0)
        part, _, tail = rest.partition("/")
        last = not tail
        listing = storage.list_folder(folder)
        for name in listing.folders:
            if fnmatch.fnmatchcase(name, part):
                if last:
                    folders.append(f"{folder}{name}/")
                else:
                    queue.append((f"{folder}{name}/", tail))
        if last:
            base = len(folder)
            objects += [o.name for o in listing.objects if fnmatch.fnmatchcase(o.name[base:], part)]
    return objects, folders


def missing(storage: Storage, key: str) -> StorageError:
    """The error for an object that is not there (or the storage's own, if it is missing)."""
    storage.check_present()
    return StorageError(
        f"object {key!r} does not exist in {storage.url}",
        hint="keys are relative to the storage prefix; see them with 'wal-g st ls -r'",
    )


@contextlib.contextmanager
def open_object(
    storage: Storage, key: str, *, decrypt: bool, decompress: bool, crypto: CryptoSettings
) -> Iterator[BinaryIO]:
    """The bytes of object ``key``: decrypted with the configured key (OpenPGP: only if it
    is an OpenPGP message; libsodium: always, as WAL-G) and decompressed by its extension
    when asked. A missing object is :func:`missing`'s error."""
    key = check_key(key.strip("/"))
    try:
        stream = storage.read_object(key)
    except ObjectNotFound:
        raise missing(storage, key) from None
    with contextlib.ExitStack() as stack:
        stack.callback(stream.close)
        source: BinaryIO = stream
        if decrypt and crypto.enabled:
            source = _decrypted(stack, source, key, crypto)
        if decompress:
            source = _decompressed(source, key)
        stack.callback(source.close)
        yield source


def _decrypted(
    stack: contextlib.ExitStack, source: BinaryIO, key: str, crypto: CryptoSettings
) -> BinaryIO:
    from walg.crypto import Crypter, looks_encrypted

    reader = io.BufferedReader(cast(io.RawIOBase, source), CHUNK)
    if not crypto.libsodium and not looks_encrypted(reader.peek(64)[:64]):
        _log.debug("not an OpenPGP message: passed through as it is", key=key)
        return cast(BinaryIO, reader)
    crypter = stack.enter_context(Crypter(crypto))
    return crypter.open_decrypted(cast(BinaryIO, reader), CHUNK, name=key)


def _decompressed(source: BinaryIO, key: str) -> BinaryIO:
    ext = posixpath.splitext(posixpath.basename(key))[1]
    method = method_for_extension(ext) if ext else None
    if method is None:
        _log.warning(
            f"decompressor for extension '{ext}' was not found "
            f"(supported methods: {list(METHODS)}), will download uncompressed"
        )
        return source
    return open_decompressed(source, method, key)


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def put_object(
    storage: Storage,
    source: BinaryIO,
    destination: str,
    *,
    method: str | None,
    crypter: Crypter | None,
    overwrite: bool,
) -> str:
    """Store ``source`` at ``destination`` (plus the extension of ``method`` when it
    compresses), encrypted by ``crypter`` if given; return the key written. An existing
    object is kept unless ``overwrite`` (WAL-G's ``-f``)."""
    key = check_key(destination.strip("/"))
    ext = extension(method) if method else ""
    if ext:
        key = f"{key}.{ext}"
    if not overwrite and storage.exists(key):
        raise StorageError(f"object {key} already exists", hint="to overwrite it, add the -f flag")
    stream = source
    if method:
        stream = cast(BinaryIO, _ChunkReader(compress_stream(stream, method)))
    if crypter is not None:
        stream = cast(BinaryIO, _ChunkReader(crypter.encrypt_stream(stream)))
    storage.put_object(key, stream)
    return key


def remove(storage: Storage, prefix: str) -> list[str]:
    """Delete the object ``prefix`` if there is one (and ``prefix`` does not end with
    ``/``), else every object under the folder ``prefix``; return the keys deleted. Nothing
    there is an error, as in WAL-G."""
    name = prefix.strip("/")
    keys: list[str] = []
    if name and not prefix.endswith("/") and _is_object(storage, check_key(name)):
        keys = [name]
    else:
        keys = [o.name for o in storage.list_objects(_folder_prefix(name))]
    if not keys:
        raise StorageError(
            f"object or folder {prefix!r} does not exist",
            hint="paths are relative to the storage prefix; see them with 'wal-g st ls'",
        )
    storage.delete_objects(keys)
    return keys


def _is_object(storage: Storage, key: str) -> bool:
    """Whether ``key`` is an object (not only a folder): it is the first key listed under
    it, if it exists (a folder of that name may exist too)."""
    first = next(iter(storage.list_objects(key)), None)
    return first is not None and first.name == key


def check_read(storage: Storage, names: list[str]) -> None:
    """List the storage, then check that each of ``names`` exists (WAL-G's
    ``st check read``)."""
    try:
        next(iter(storage.list_objects()), None)
    except WalgError as err:
        raise StorageError(f"failed to list the storage: {err.msg}", err.hint) from err
    absent = [n for n in names if not _exists(storage, n)]
    if absent:
        raise StorageError(f"files are missing: {', '.join(absent)}")


def _exists(storage: Storage, name: str) -> bool:
    try:
        return storage.exists(check_key(name.strip("/")))
    except WalgError:
        return False


def check_write(storage: Storage) -> str:
    """Write a small object under a random 32-hex-digit name at the root, then delete it
    (WAL-G's ``st check write``); return the name used."""
    name = secrets.token_hex(16)
    while storage.exists(name):
        name = secrets.token_hex(16)
    try:
        storage.put_object(name, b"test")
    except WalgError as err:
        raise StorageError(f"failed to write to the storage: {err.msg}", err.hint) from err
    finally:
        try:
            storage.delete_objects([name])
        except WalgError:
            _log.warning(f"failed to clean temp files, {name} left in storage")
    return name


def write_local(path: str, chunks: BinaryIO) -> str:
    """Write ``chunks`` to the new local file ``path`` (into it, if ``path`` is a folder:
    the object's base name is given by the caller) through a temporary name, fsynced,
    linked into place only if nothing is there; return the path written."""
    from walg.fsutil import fsync_dir, naming

    folder = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(folder, f".{os.path.basename(path)}.walg-{secrets.token_hex(4)}")
    try:
        with open(temp, "xb") as out, naming(temp):
            while data := chunks.read(CHUNK):
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_dir(folder)
    return path
