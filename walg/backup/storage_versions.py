"""Object versions for ``wal-g st``: ``ls --all-versions``, ``rm --version-id ID`` and
``rm --all-versions``, as WAL-G's storage tools do them on a versioned S3 bucket.

Listing shows every version and delete marker, with its version ID and WAL-G's
``LATEST`` / ``DELETE`` / ``LATEST DELETE`` in the last column; within a folder the versions
come first (by key, newest first), then the delete markers, as WAL-G prints them. Removing a
version deletes it for good (no new delete marker). A storage that keeps no versions raises
:class:`VersionsUnsupported`; the command decides what to do with that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from walg.backup.storage_tools import ListEntry, _folder_prefix
from walg.errors import StorageError
from walg.storage.base import ObjectVersion, check_key

if TYPE_CHECKING:
    from walg.storage import Storage

__all__ = ["remove_all_versions", "remove_version", "version_entries"]


def _info(version: ObjectVersion) -> str:
    if version.delete_marker:
        return "LATEST DELETE" if version.latest else "DELETE"
    return "LATEST" if version.latest else ""


def version_entries(storage: Storage, path: str, recursive: bool) -> list[ListEntry]:
    """The lines of ``st ls [-r] --all-versions path``: sub-folders (not recursive), then
    versions and delete markers, folder by folder breadth first when recursive."""
    prefix = _folder_prefix(path)
    found = [(v.name[len(prefix) :], v) for v in storage.list_versions(prefix)]
    entries: list[ListEntry] = []
    if not recursive:
        folders = sorted({name.split("/", 1)[0] for name, _ in found if "/" in name})
        entries = [ListEntry("dir", 0, None, folder + "/") for folder in folders]
        found = [(name, v) for name, v in found if "/" not in name]

    def order(item: tuple[str, ObjectVersion]) -> tuple[int, list[str], bool, str]:
        *folders, name = item[0].split("/")
        return len(folders), [f + "/" for f in folders], item[1].delete_marker, name

    found.sort(key=order)  # stable: each key's versions stay newest first
    return entries + [
        ListEntry("obj", v.size, v.modified, name, v.version_id, _info(v)) for name, v in found
    ]


def remove_version(storage: Storage, key: str, version_id: str) -> None:
    """Delete version ``version_id`` of object ``key`` for good; an error if there is none."""
    key = check_key(key.strip("/"))
    if not any(v.name == key and v.version_id == version_id for v in storage.list_versions(key)):
        raise StorageError(
            f"object {key!r} has no version {version_id!r} in {storage.url}",
            hint="see the versions with 'wal-g st ls --all-versions FOLDER'",
        )
    storage.delete_version(key, version_id)


def remove_all_versions(storage: Storage, prefix: str) -> list[ObjectVersion]:
    """Delete for good every version and delete marker of the object ``prefix`` (when it
    does not end with ``/`` and has versions), else of everything under the folder
    ``prefix``; return what was deleted. Nothing there is an error, as for ``st rm``."""
    name = prefix.strip("/")
    doomed: list[ObjectVersion] = []
    if name and not prefix.endswith("/"):
        doomed = [v for v in storage.list_versions(check_key(name)) if v.name == name]
    if not doomed:
        doomed = storage.list_versions(_folder_prefix(name))
    if not doomed:
        raise StorageError(
            f"object or folder {prefix!r} has no versions in {storage.url}",
            hint="paths are relative to the storage prefix; see them with "
            "'wal-g st ls --all-versions'",
        )
    for version in doomed:
        storage.delete_version(version.name, version.version_id)
    return doomed
