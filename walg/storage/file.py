"""Storage in a local (or mounted) directory: WALG_FILE_PREFIX.

Writes go to a hidden temporary file in the target's directory, are fsynced, renamed over
the final name, and the directory is fsynced: a reader never sees a partial object and a
crash never leaves one under the final name (only a temporary file, which listings skip).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

from walg.errors import (
    ObjectExists,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
)
from walg.fsutil import fsync_dir, make_dirs
from walg.sizes import CHUNK
from walg.storage.base import ObjectInfo, RetryPolicy, Storage, iter_chunks

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["TEMP_MARK", "FileStorage"]

TEMP_MARK = ".walg-tmp-"
"""Temporary files start with this; listings skip them."""

_TRANSIENT = {errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE}
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


class FileStorage(Storage):
    """Objects as files below ``directory``; keys are paths relative to it."""

    def __init__(self, directory: str, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry)
        self.directory = os.path.abspath(directory)

    def _describe(self, root: str) -> str:
        return f"file://{os.path.join(self.directory, root)}"

    def check_present(self) -> None:
        """A storage folder that does not exist is an unmounted file system or a wrong
        prefix, never an empty archive: wal-fetch must not read it as "not archived"."""
        if not os.path.isdir(self.directory):
            raise StorageError(
                f"the storage folder {self.directory} does not exist",
                hint="check WALG_FILE_PREFIX, and that the file system holding it is mounted",
            )

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, *key.split("/"))

    def _put(self, key: str, source: BinaryIO) -> None:
        self._write(key, source, os.replace)

    def _put_new(self, key: str, data: bytes) -> None:
        """The fsynced temporary file is hard-linked to the final name, which appears
        complete and only if it was absent; file systems without hard links get an
        exclusive create of the final name instead."""
        self._write(key, io.BytesIO(data), functools.partial(self._link_new, key, data))

    def _link_new(self, key: str, data: bytes, temp: str, path: str) -> None:
        try:
            os.link(temp, path)
        except FileExistsError as err:
            raise ObjectExists(f"object {key!r} exists already in {self._describe('')}") from err
        except OSError as err:
            if err.errno not in _NO_LINKS:
                raise
            self._create_in_place(key, data, path)
        os.unlink(temp)

    def _create_in_place(self, key: str, data: bytes, path: str) -> None:
        try:
            out = open(path, "xb")  # noqa: SIM115 - closed below
        except FileExistsError as err:
            raise ObjectExists(f"object {key!r} exists already in {self._describe('')}") from err
        try:
            with out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def _write(self, key: str, source: BinaryIO, publish: Callable[[str, str], None]) -> None:
        """Write ``source`` to a fsynced temporary file, ``publish(temp, path)`` it under
        the final name, and fsync the directory; the temporary file never stays behind."""
        path = self._path(key)
        folder = os.path.dirname(path)
        # os.urandom, not secrets: importing secrets loads OpenSSL (~4 ms per wal-push)
        temp = os.path.join(folder, f"{TEMP_MARK}{os.path.basename(path)}.{os.urandom(4).hex()}")
        where = self._describe("")
        with _translated(key, where):
            make_dirs(folder)
            out = open(temp, "xb")  # noqa: SIM115 - closed below, then renamed
        try:
            with out:
                for chunk in iter_chunks(source, CHUNK):  # source errors pass unchanged
                    with _translated(key, where):
                        out.write(chunk)
                with _translated(key, where):
                    out.flush()
                    os.fsync(out.fileno())
            with _translated(key, where):
                publish(temp, path)
                fsync_dir(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _read(self, key: str, offset: int) -> BinaryIO:
        with _translated(key, self._describe("")):
            stream = open(self._path(key), "rb")  # noqa: SIM115 - returned to the caller
            if offset:
                stream.seek(offset)
            return stream

    def _stat(self, key: str) -> ObjectInfo:
        with _translated(key, self._describe("")):
            st = os.stat(self._path(key))
        return ObjectInfo(key, st.st_size, _modified(st))

    def _list(self, prefix: str, after: str) -> Iterator[ObjectInfo]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        with _translated(prefix, self._describe("")):
            found = sorted(_walk(self._path(folder) if folder else self.directory, folder))
        for key, st in found:
            if key.startswith(prefix) and key > after:
                yield ObjectInfo(key, st.st_size, _modified(st))

    def _delete(self, keys: Sequence[str]) -> None:
        touched: set[str] = set()
        for key in keys:
            path = self._path(key)
            with _translated(key, self._describe("")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
            touched.add(os.path.dirname(path))
        for folder in sorted(touched, key=len, reverse=True):
            self._prune(folder)

    def list_temporary(self, folder: str = "") -> Iterator[ObjectInfo]:
        """Temporary files that interrupted writes left under ``folder`` (listings skip
        them), with keys relative to this storage folder: for ``wal-g delete garbage``."""
        inside = (self._root + folder).strip("/")
        top = self._path(inside) if inside else self.directory
        for path, _folders, files in os.walk(top):
            for name in sorted(files):
                if not name.startswith(TEMP_MARK):
                    continue
                full = os.path.join(path, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue  # renamed or removed meanwhile
                key = os.path.relpath(full, self.directory).replace(os.sep, "/")
                yield ObjectInfo(key[len(self._root) :], st.st_size, _modified(st))

    def _prune(self, folder: str) -> None:
        """fsync ``folder``, then remove it and its parents while they are empty."""
        with contextlib.suppress(OSError):
            fsync_dir(folder)
        while folder.startswith(self.directory + os.sep):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = os.path.dirname(folder)
            with contextlib.suppress(OSError):
                fsync_dir(folder)


def _modified(st: os.stat_result) -> datetime:
    """A file's mtime as the aware UTC datetime of :class:`ObjectInfo`."""
    from datetime import UTC, datetime  # only when a listing or stat needs it

    return datetime.fromtimestamp(st.st_mtime, UTC)


def _walk(path: str, key_prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith(TEMP_MARK):
            continue
        key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, key)
        elif entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                yield key, entry.stat()


@contextlib.contextmanager
def _translated(key: str, where: str) -> Iterator[None]:
    """Turn OSError into the storage errors of walg."""
    try:
        yield
    except FileNotFoundError as err:
        raise ObjectNotFound(f"no object {key!r} in {where}") from err
    except PermissionError as err:
        raise PermissionDenied(f"permission denied for {key!r} in {where}: {err.strerror}") from err
    except OSError as err:
        error = StorageUnavailable if err.errno in _TRANSIENT else StorageError
        raise error(f"cannot access {key!r} in {where}: {err.strerror or err}") from err
