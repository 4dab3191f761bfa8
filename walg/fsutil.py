"""Durable local file system steps, shared by file storage, restores and WAL handling."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["fsync_dir", "fsync_path", "make_dirs", "naming"]


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """Give an ``OSError`` raised inside (a write or fsync on a descriptor, which names no
    file) the ``path`` it concerns, so that the user is told which file failed."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror or os.strerror(err.errno), path) from err


def fsync_path(path: str) -> None:
    """fsync a file by name (its data may have been written through another handle)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with naming(path):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a directory, so that entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with naming(path):
            os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str, mode: int = 0o777) -> None:
    """Create ``path`` and missing parents, fsyncing each parent that gained an entry."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_dirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    fsync_dir(parent)
