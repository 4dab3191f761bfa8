"""Storage in a Google Cloud Storage bucket: WALG_GS_PREFIX=gs://bucket/path.

Objects live at ``path/<key>`` in the bucket. Credentials are the service account file of
GOOGLE_APPLICATION_CREDENTIALS, else the application default credentials; against an
emulator (STORAGE_EMULATOR_HOST, for tests) they are anonymous. google-cloud-storage is
imported when a GcsStorage first talks to the bucket, and each process makes its own
client: a GcsStorage pickles to its options.

Metadata calls (stat, list, batched deletes, small and create-if-absent uploads) go
through google-cloud-storage with its own retries turned off, so that only walg's
RetryPolicy retries. An object larger than ``single_request_limit`` goes up as a
resumable upload in ``chunk_size`` chunks through google-resumable-media (see
:mod:`walg.storage.gcs_upload`); a read is one streamed GET from an offset over the same
credentials. Every request has a timeout.
"""

from __future__ import annotations

import io
import json
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO, NamedTuple, cast
from urllib.parse import quote

from walg.config.settings import GcsSettings, StorageSettings
from walg.errors import (
    ConfigError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    VersionsUnsupported,
)
from walg.storage.base import ObjectInfo, ObjectVersion, RetryPolicy, Storage, check_key
from walg.storage.gcs_http import (
    HttpReader,
    Where,
    generations,
    response_detail,
    status_error,
    translated,
)
from walg.storage.gcs_upload import (
    CHUNK_UNIT,
    OCTET_STREAM,
    ChunkWindow,
    ResumableUpload,
    read_up_to,
)

__all__ = ["GCS_BATCH", "GCS_ENDPOINT", "GcsOptions", "GcsStorage"]

GCS_ENDPOINT = "https://storage.googleapis.com"
GCS_BATCH = 100
"""Calls per batch request (a GCS limit)."""

SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_MULTIPART_LIMIT = 8 << 20  # google-cloud-storage sends larger "single" uploads resumably


@dataclass(frozen=True)
class GcsOptions:
    """Where the bucket is and how to talk to it (picklable; no credentials inside)."""

    bucket: str
    credentials_file: str | None = None
    emulator_host: str | None = None
    chunk_size: int = 16 << 20
    single_request_limit: int = _MULTIPART_LIMIT
    timeout: tuple[float, float] = (10.0, 120.0)  # connect, read (seconds)
    variable: str = "WALG_GS_PREFIX"  # named in the hint when the bucket is missing

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.chunk_size % CHUNK_UNIT:
            raise ValueError(f"chunk_size must be a positive multiple of {CHUNK_UNIT}")
        if not 0 <= self.single_request_limit <= _MULTIPART_LIMIT:
            raise ValueError(f"single_request_limit must be within 0..{_MULTIPART_LIMIT}")

    @property
    def endpoint(self) -> str:
        """The JSON API root: the emulator's, or Google's."""
        if not self.emulator_host:
            return GCS_ENDPOINT
        host = self.emulator_host.rstrip("/")
        return host if "://" in host else f"http://{host}"


class _Made(NamedTuple):
    client: Any  # google.cloud.storage.Client
    bucket: Any  # google.cloud.storage.Bucket
    session: Any  # google.auth.transport.requests.AuthorizedSession


class _Clients:
    """The client, bucket and HTTP session of this process, made on first use and shared
    by the sub-folder views of one storage. Pickles to its options alone."""

    def __init__(self, options: GcsOptions) -> None:
        self.options = options
        self.bucket_seen = False  # an operation succeeded, so the bucket exists
        self._lock = threading.Lock()
        self._made: _Made | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, object]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])  # type: ignore[misc]

    def get(self) -> _Made:
        with self._lock:
            if self._made is None or self._pid != os.getpid():
                self._made = _connect(self.options)
                self._pid = os.getpid()
            return self._made


def _connect(options: GcsOptions) -> _Made:
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import storage

    credentials = _credentials(options)
    client = storage.Client(
        project=None,  # no project lookup: object calls do not need one
        credentials=credentials,
        client_options={"api_endpoint": options.endpoint},
    )
    # google-cloud-storage 3.x fetches bucket metadata in background threads for tracing
    # attributes; walg does not trace, and the extra requests would need a permission
    # (storage.buckets.get) walg does not, and would interleave with retries.
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return _Made(client, client.bucket(options.bucket), AuthorizedSession(credentials))


def _credentials(options: GcsOptions) -> Any:
    if options.emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    if options.credentials_file:
        return _credentials_from_file(options.credentials_file)
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default(scopes=SCOPES)[0]
    except DefaultCredentialsError as err:
        raise ConfigError(
            "no Google credentials found for the GCS storage",
            hint="set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run "
            "`gcloud auth application-default login`, or run on GCE/GKE with a service account",
        ) from err


def _credentials_from_file(path: str) -> Any:
    """The credentials in ``path``: a service account key or gcloud's authorized-user file
    by their own loaders; other kinds (workload identity federation...) the way
    google.auth.default() loads this same variable. google-auth deprecates its generic
    loader for files from untrusted sources; this one is the operator's own setting."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.oauth2 import credentials, service_account

    try:
        with open(path, encoding="utf-8") as file:
            info = json.load(file)
        kind = info.get("type") if isinstance(info, dict) else None
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        if kind == "authorized_user":
            return credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return google.auth.load_credentials_from_file(path, scopes=SCOPES)[0]
    except (OSError, ValueError, DefaultCredentialsError) as err:  # ValueError: bad JSON
        raise ConfigError(
            f"cannot load Google credentials from {path} (GOOGLE_APPLICATION_CREDENTIALS)",
            hint="point GOOGLE_APPLICATION_CREDENTIALS at a readable service account key "
            "file (JSON)",
        ) from err


class GcsStorage(Storage):
    """A folder of a GCS bucket; keys are object names relative to it."""

    def __init__(self, options: GcsOptions, path: str = "", retry: RetryPolicy | None = None):
        super().__init__(retry)
        self.options = options = replace(options, timeout=self.retry.timeouts(options.timeout))
        self._clients = _Clients(options)
        self._where = Where(options.bucket)
        if path.strip("/"):
            self._root = check_key(path.strip("/")) + "/"

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, gcs: GcsSettings, retry: RetryPolicy | None = None
    ) -> GcsStorage:
        """The storage that WALG_GS_PREFIX (or WALE_GS_PREFIX) names."""
        if not storage.bucket:
            raise ConfigError(
                f"{storage.variable} names no bucket", hint="use gs://bucket/path/to/folder"
            )
        options = GcsOptions(
            bucket=storage.bucket,
            credentials_file=gcs.credentials_file,
            emulator_host=gcs.emulator_host,
            variable=storage.variable,
        )
        return cls(options, storage.path, retry)

    def _describe(self, root: str) -> str:
        return self._where.url(root)

    # -- writing ------------------------------------------------------------------------

    def _put(self, key: str, source: BinaryIO) -> None:
        limit = self.options.single_request_limit
        head = read_up_to(source, limit + 1)
        try:
            if len(head) <= limit:
                self._put_small(key, head, retry=not _seekable(source))
            else:
                self._put_resumable(key, ChunkWindow(head, source, self.options.chunk_size))
                del head  # the window holds it now
        except ObjectNotFound as err:  # uploads only miss when the bucket does
            raise self._bucket_error() from err
        self._clients.bucket_seen = True

    def _put_small(self, key: str, data: bytes, retry: bool) -> None:
        """One request. The base class retries a seekable source from its start; a stream
        it cannot rewind is retried here, from the bytes in memory."""

        def upload() -> None:
            blob = self._clients.get().bucket.blob(key)
            with translated("upload", self._where.url(key)):
                blob.upload_from_file(
                    io.BytesIO(data),
                    size=len(data),
                    content_type=OCTET_STREAM,
                    checksum="crc32c",
                    retry=None,
                    timeout=self.options.timeout,
                )

        if retry:
            self.retry.call(f"put {key}", upload)
        else:
            upload()

    def _put_new(self, key: str, data: bytes) -> None:
        """One multipart upload with ``ifGenerationMatch=0``: GCS creates the object only if
        the name has no live generation (412 otherwise). google-cloud-storage checks the
        stored CRC32C; an object that arrived corrupt is deleted."""
        from google.api_core.exceptions import PreconditionFailed
        from google.resumable_media import DataCorruption

        url = self._where.url(key)
        blob = self._clients.get().bucket.blob(key)
        try:
            with translated("upload", url):
                try:
                    blob.upload_from_file(
                        io.BytesIO(data),
                        size=len(data),
                        content_type=OCTET_STREAM,
                        checksum="crc32c",
                        if_generation_match=0,
                        retry=None,
                        timeout=self.options.timeout,
                    )
                except PreconditionFailed as err:
                    raise ObjectExists(f"object {url} exists already") from err
        except DataCorruption as err:
            self._delete([key])
            raise IntegrityError(f"upload of {url} arrived corrupt; it was deleted") from err
        except ObjectNotFound as err:
            raise self._bucket_error() from err
        self._clients.bucket_seen = True

    def _put_resumable(self, key: str, window: ChunkWindow) -> None:
        start_url = (
            f"{self.options.endpoint}/upload/storage/v1/b/{quote(self.options.bucket, safe='')}"
            f"/o?uploadType=resumable&name={quote(key, safe='')}"
        )
        ResumableUpload(
            self._clients.get().session,
            start_url,
            self._where.url(key),
            self.retry,
            self.options.timeout,
            stat=lambda: self._size_and_crc(key),
            discard=lambda: self._delete([key]),
        ).run(window)

    # -- reading ------------------------------------------------------------------------

    def _read(self, key: str, offset: int) -> BinaryIO:
        # Hand-written on purpose: one streamed GET read as it arrives (1.5-2.4 GB/s from
        # the local emulators, bench/storage_throughput.py), reopened at an offset by the
        # base class after a cut. google-cloud-storage's BlobReader fetches 40 MiB ranges
        # into memory per request, and its download helpers write into a stream (push)
        # where walg's pipeline pulls.
        url = self._where.url(key)
        media = (
            f"{self.options.endpoint}/download/storage/v1/b/{quote(self.options.bucket, safe='')}"
            f"/o/{quote(key, safe='')}?alt=media"
        )
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with translated("read", url):
            response = self._clients.get().session.request(
                "GET", media, headers=headers, stream=True, timeout=self.options.timeout
            )
        status = response.status_code
        if status == 416:  # the offset is the object's end: nothing more to read
            response.close()
            return io.BytesIO(b"")
        if status not in (200, 206) or (offset and status != 206):
            detail = response_detail(response)
            response.close()
            if status in (200, 206):
                raise StorageError(f"cannot read {url}: the server ignored the byte range")
            raise self._maybe_missing(status_error(status, "read", url, detail))
        self._clients.bucket_seen = True
        return cast(BinaryIO, HttpReader(response, url))

    def _stat(self, key: str) -> ObjectInfo:
        blob = self._reload(key)
        return ObjectInfo(key, int(blob.size or 0), blob.updated or datetime.fromtimestamp(0, UTC))

    def _reload(self, key: str) -> Any:
        blob = self._clients.get().bucket.blob(key)
        try:
            with translated("stat", self._where.url(key)):
                blob.reload(retry=None, timeout=self.options.timeout)
        except ObjectNotFound as err:
            raise self._maybe_missing(err) from err
        self._clients.bucket_seen = True
        return blob

    def _size_and_crc(self, key: str) -> tuple[int, str | None]:
        try:
            blob = self._reload(key)
        except ObjectNotFound:
            return -1, None
        return int(blob.size or 0), blob.crc32c

    def _list(self, prefix: str, after: str) -> Iterator[ObjectInfo]:
        made = self._clients.get()
        try:
            with translated("list", self._where.url(prefix)):
                blobs = made.client.list_blobs(
                    made.bucket,
                    prefix=prefix or None,
                    start_offset=after or None,  # inclusive, hence the filter below
                    page_size=1000,
                    fields="items(name,size,updated),nextPageToken",
                    retry=None,
                    timeout=self.options.timeout,
                )
                for blob in blobs:  # pages are fetched as the iteration goes
                    name = blob.name
                    # A name ending in "/" is a console "folder" placeholder, not a key.
                    if name > after and name.startswith(prefix) and not name.endswith("/"):
                        yield ObjectInfo(name, int(blob.size or 0), blob.updated)
        except ObjectNotFound as err:  # listing misses only when the bucket does
            raise self._bucket_error() from err
        self._clients.bucket_seen = True

    def _list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        made = self._clients.get()
        with translated("list versions of", self._where.url(prefix)):
            yield from generations(made.client, made.bucket, prefix, self.options.timeout)

    def _delete_version(self, key: str, version_id: str) -> None:
        raise VersionsUnsupported(
            f"walg cannot delete one generation of {self._where.url(key)}: its GCS test "
            "emulator (fake-gcs-server) ignores the generation, so walg cannot check it",
            hint=f"use gcloud storage rm {self._where.url(key)}#{version_id}",
        )

    # -- deleting -----------------------------------------------------------------------

    def _delete(self, keys: Sequence[str]) -> None:
        for first in range(0, len(keys), GCS_BATCH):
            self._delete_chunk(keys[first : first + GCS_BATCH])

    def _delete_chunk(self, keys: Sequence[str]) -> None:
        """One batch request; a missing key is fine, any other failure raises."""
        made = self._clients.get()
        url = self._where.url(keys[0]) + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
        with translated("delete", url), made.client.batch(raise_exception=False) as batch:
            for key in keys:
                made.bucket.delete_blob(key, retry=None, timeout=self.options.timeout)
        # The per-call answers (requests.Response objects) of a batch built with
        # raise_exception=False; the library keeps them only on this attribute.
        statuses = [int(r.status_code) for r in batch._responses]
        failed = [s for s in statuses if not 200 <= s < 300 and s != 404]
        if failed:
            raise status_error(max(failed, key=_severity), "delete", url)
        if statuses and all(s == 404 for s in statuses) and not self._bucket_exists():
            raise self._bucket_error()

    # -- the bucket ---------------------------------------------------------------------

    def _maybe_missing(self, err: StorageError) -> StorageError:
        """``err``, or the missing-bucket error if a 404 came from the bucket."""
        if not isinstance(err, ObjectNotFound) or self._bucket_exists():
            return err
        return self._bucket_error()

    def _bucket_exists(self) -> bool:
        if self._clients.bucket_seen:
            return True
        bucket = self._clients.get().bucket
        try:
            with translated("check the bucket of", self._where.url()):
                exists = bool(bucket.exists(retry=None, timeout=self.options.timeout))
        except PermissionDenied:
            return True  # allowed to use objects but not to see the bucket: it exists
        self._clients.bucket_seen = exists
        return exists

    def _bucket_error(self) -> StorageError:
        return StorageError(
            f"the bucket of {self._where.url()} does not exist",
            hint=f"check the bucket name in {self.options.variable} (gs://bucket/path) "
            "and that the bucket has been created",
        )


def _severity(status: int) -> int:
    """Which of several failed statuses to report: permanent before transient."""
    return 2 if status in (401, 403) else 0 if status == 429 or status >= 500 else 1


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False
