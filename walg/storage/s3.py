"""Storage in an S3 bucket (or an S3-compatible service): WALG_S3_PREFIX=s3://bucket/path.

Objects live at ``path/<key>`` in the bucket. boto3 is imported here, and this module is
imported only when S3 storage is opened (see :func:`walg.storage.open_storage`).

The boto3 client is made on first use in each process (a storage pickles without it, and a
forked child makes its own), with botocore's own retries turned off so that the storage's
:class:`RetryPolicy` is the only one, and with connect/read timeouts so nothing hangs.
Uploads stream: see :mod:`walg.storage.s3_multipart` for the part size and concurrency.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, BinaryIO, cast

import boto3
import botocore.loaders
import botocore.session
from botocore import exceptions as bce
from botocore.config import Config

from walg import __version__
from walg.config.settings import S3Settings, StorageSettings
from walg.errors import (
    ConfigError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from walg.logs import get_logger
from walg.storage.base import ObjectInfo, ObjectVersion, ReadStream, RetryPolicy, Storage
from walg.storage.s3_errors import (
    Where,
    delete_error,
    no_conditional_writes,
    translate,
    translated,
)
from walg.storage.s3_multipart import DEFAULT_PART_SIZE, MultipartUpload, PartSource
from walg.storage.s3_region import DEFAULT_REGION, ask_region, endpoint_url, known_region

__all__ = ["DEFAULT_PART_SIZE", "S3Options", "S3Storage"]

_log = get_logger("walg.storage")


@dataclass(frozen=True)
class S3Options:
    """Everything an :class:`S3Storage` is made from (picklable: no client, no session)."""

    bucket: str
    path: str = ""  # key prefix inside the bucket, without leading or trailing '/'
    settings: S3Settings = field(default_factory=S3Settings)
    variable: str = "WALG_S3_PREFIX"  # where the user named the bucket, for hints
    concurrency: int = 16  # threads sending the parts of one multipart upload
    part_size: int = DEFAULT_PART_SIZE
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    proxies: Mapping[str, str] | None = None  # botocore proxies, e.g. {"http": "http://..."}


class S3Storage(Storage):
    """Objects in an S3 bucket under a key prefix."""

    def __init__(self, options: S3Options, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry or RetryPolicy(max_retries=options.settings.max_retries))
        connect = self.retry.connect_timeout(options.connect_timeout)  # within the budget
        options = dataclasses.replace(options, connect_timeout=connect)
        self.options = options
        path = options.path.strip("/")
        self._root = path + "/" if path else ""
        self._where = Where(options.bucket, options.variable)
        self._clients = _Client(options)

    @classmethod
    def from_settings(
        cls,
        storage: StorageSettings,
        s3: S3Settings,
        concurrency: int,
        retry: RetryPolicy | None = None,
    ) -> S3Storage:
        """The storage WALG_S3_PREFIX names, with the AWS_* / WALG_S3_* settings."""
        if storage.kind != "s3" or not storage.bucket:
            raise ConfigError(f"{storage.variable}={storage.prefix!r} is not an s3:// prefix")
        options = S3Options(
            bucket=storage.bucket,
            path=storage.path,
            settings=s3,
            variable=storage.variable,
            concurrency=max(1, concurrency),
        )
        return cls(options, retry or RetryPolicy(max_retries=s3.max_retries))

    @property
    def client(self) -> Any:
        """This process's boto3 S3 client (made on first use)."""
        return self._clients.get()

    def _describe(self, root: str) -> str:
        return f"s3://{self.options.bucket}/{root}"

    def _call(self, op: str, key: str, operation: Callable[[Any], Any]) -> Any:
        """``operation(client)`` with its errors translated; one attempt."""
        with translated(op, key, self._where):
            return operation(self.client)

    def _put_args(self) -> dict[str, str]:
        """StorageClass and server-side encryption, sent with every PUT and multipart start."""
        s3 = self.options.settings
        args = {"StorageClass": s3.storage_class} if s3.storage_class else {}
        if s3.sse:
            args["ServerSideEncryption"] = s3.sse
            if s3.sse_kms_id and s3.sse.startswith("aws:kms"):
                args["SSEKMSKeyId"] = s3.sse_kms_id
        return args

    def _put(self, key: str, source: BinaryIO) -> None:
        parts = PartSource(source, self.options.part_size)
        if not parts.fits_one_part():
            args = self._put_args()
            concurrency = self.options.concurrency
            MultipartUpload(self.client, self._where, key, args, concurrency, self.retry).run(parts)
            return
        data = parts.next_part()

        def put() -> None:
            self._call(
                "put",
                key,
                lambda c: c.put_object(
                    Bucket=self.options.bucket, Key=key, Body=data, **self._put_args()
                ),
            )

        # The base class retries a seekable stream from its start; a stream it cannot
        # rewind is retried here, from the bytes already in memory.
        if _seekable(source):
            put()
        else:
            self.retry.call(f"put {key}", put)

    def _put_new(self, key: str, data: bytes) -> None:
        """One PUT with ``If-None-Match: *``: S3 stores it only if the key is free (412
        otherwise; 409 while a concurrent conditional write is in flight, which a retry
        resolves). A service that ignores the header overwrites: callers check first.

        A service that refuses the header as unsupported (:func:`no_conditional_writes`)
        gets, from then on in this process, a check for the key and then a plain PUT."""
        args = {"Bucket": self.options.bucket, "Key": key, "Body": data, **self._put_args()}
        if self._clients.conditional_writes:
            try:
                self._call("put", key, lambda c: c.put_object(IfNoneMatch="*", **args))
                return
            except StorageError as err:
                code = _code(err)
                if code == "PreconditionFailed":
                    raise ObjectExists(f"object {self._where.url(key)} exists already") from err
                if code == "ConditionalRequestConflict":
                    raise StorageUnavailable(f"S3 put of {self._where.url(key)}: {code}") from err
                if not no_conditional_writes(_response(err)):
                    raise
                self._clients.conditional_writes = False
                _log.warning(
                    "S3 service has no conditional writes (If-None-Match): two backup-push "
                    "at one WAL position are caught only by walg's own checks",
                    bucket=self.options.bucket,
                    error=err.msg,
                )
        try:
            self._stat(key)
        except ObjectNotFound:
            self._call("put", key, lambda c: c.put_object(**args))
            return
        raise ObjectExists(f"object {self._where.url(key)} exists already")

    def _read(self, key: str, offset: int) -> BinaryIO:
        args = {"Bucket": self.options.bucket, "Key": key}
        if offset:
            args["Range"] = f"bytes={offset}-"
        try:
            answer = self._call("read", key, lambda c: c.get_object(**args))
        except StorageError as err:
            if offset and _code(err) == "InvalidRange":  # resuming exactly at the end
                return self._at_end(key, offset)
            raise
        return cast(BinaryIO, _Body(answer["Body"], key, self._where))

    def _at_end(self, key: str, offset: int) -> BinaryIO:
        """An empty stream if the object ends at ``offset``; an error if it is shorter."""
        if self._stat(key).size != offset:
            raise StorageError(f"{self._where.url(key)} changed while it was being read")
        return io.BytesIO(b"")

    def _stat(self, key: str) -> ObjectInfo:
        answer = self._call(
            "stat", key, lambda c: c.head_object(Bucket=self.options.bucket, Key=key)
        )
        return ObjectInfo(key, int(answer["ContentLength"]), answer["LastModified"].astimezone(UTC))

    def _list(self, prefix: str, after: str) -> Iterator[ObjectInfo]:
        """ListObjectsV2 pages, following continuation tokens to the end."""
        args = {"Bucket": self.options.bucket, "Prefix": prefix}
        if after:
            args["StartAfter"] = after
        while True:
            page = self._call("list", prefix, lambda c: c.list_objects_v2(**args))
            for item in page.get("Contents", ()):
                if not item["Key"].endswith("/"):  # "folder" markers made by consoles
                    yield ObjectInfo(
                        item["Key"], int(item["Size"]), item["LastModified"].astimezone(UTC)
                    )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token

    def _delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        batch = {"Objects": [{"Key": key} for key in keys], "Quiet": True}
        what = keys[0] + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")
        answer = self._call(
            "delete",
            what,
            lambda c: c.delete_objects(Bucket=self.options.bucket, Delete=batch),
        )
        errors = [e for e in answer.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
        if errors:
            raise delete_error(errors, len(keys), self._where)

    def _list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """ListObjectVersions pages: versions and delete markers (an unversioned bucket
        answers with each object's "null" version)."""
        pages = self._call(
            "list versions of",
            prefix,
            lambda c: list(
                c.get_paginator("list_object_versions").paginate(
                    Bucket=self.options.bucket, Prefix=prefix
                )
            ),
        )
        for page in pages:
            for marker, items in (
                (False, page.get("Versions", ())),
                (True, page.get("DeleteMarkers", ())),
            ):
                for item in items:
                    yield ObjectVersion(
                        item["Key"],
                        int(item.get("Size", 0)),
                        item["LastModified"].astimezone(UTC),
                        str(item["VersionId"]),
                        bool(item["IsLatest"]),
                        marker,
                    )

    def _delete_version(self, key: str, version_id: str) -> None:
        self._call(
            "delete",
            f"{key} (version {version_id})",
            lambda c: c.delete_object(Bucket=self.options.bucket, Key=key, VersionId=version_id),
        )


def _response(err: StorageError) -> dict[str, Any]:
    """The S3 error answer behind a translated error ({} if it was not an S3 answer)."""
    cause = err.__cause__
    return dict(cause.response) if isinstance(cause, bce.ClientError) else {}


def _code(err: StorageError) -> str:
    """The S3 error code behind a translated error ("" if it was not an S3 answer)."""
    return str(_response(err).get("Error", {}).get("Code", ""))


class _Body(ReadStream):
    """A GetObject body whose read errors are walg's (so a cut read can be resumed)."""

    def __init__(self, body: Any, key: str, where: Where) -> None:
        super().__init__()
        self._body = body
        self._key = key
        self._where = where

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
        except Exception as err:
            raise translate(err, "read", self._key, self._where) from err
        return data

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _Client:
    """The boto3 client, made on first use in each process; pickles without it.

    Shared by a storage and its sub-folders (``copy.copy`` keeps the same holder), with
    what this process learnt about the service: ``conditional_writes`` turns False once the
    service refused ``If-None-Match`` as unsupported.
    """

    def __init__(self, options: S3Options) -> None:
        self._reset(options)

    def _reset(self, options: S3Options) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = 0
        self.conditional_writes = True

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reset(state["options"])

    def get(self) -> Any:
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            with self._lock:
                if self._client is None or self._pid != pid:
                    self._client = make_client(self._options)
                    self._pid = pid
        return self._client


def make_client(options: S3Options) -> Any:
    """A boto3 S3 client for ``options``; the region: AWS_REGION, else the endpoint's, else
    asked of S3 once (:mod:`walg.storage.s3_region`)."""
    session = _session(options.settings)
    region = known_region(options.settings) or ask_region(
        session.client(
            "s3",
            region_name=DEFAULT_REGION,
            endpoint_url=endpoint_url(options.settings.endpoint),
            config=_config(options, DEFAULT_REGION),
        ),
        options.bucket,
        options.variable,
    )
    return session.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url(options.settings.endpoint),
        config=_config(options, region),
    )


_LOADER_LOCK = threading.Lock()
_loader: Any = None


def _shared_loader() -> Any:
    """This interpreter's botocore data loader, which caches the parsed S3 model and endpoint
    rules (60-100 ms to load for each new session). One per interpreter, so a forked worker
    inherits what its parent loaded and makes its client in ~20 ms; it holds parsed JSON
    only (no sockets, no credentials), which is safe to share across fork."""
    global _loader
    if _loader is None:
        _loader = botocore.loaders.create_loader()
    return _loader


def _session(s3: S3Settings) -> Any:
    """A boto3 session with the given keys, else AWS_PROFILE / ~/.aws / instance roles."""
    keys = {
        "aws_access_key_id": s3.access_key_id.reveal() if s3.access_key_id else None,
        "aws_secret_access_key": s3.secret_access_key.reveal() if s3.secret_access_key else None,
        "aws_session_token": s3.session_token.reveal() if s3.session_token else None,
    }
    profile = None if keys["aws_access_key_id"] else s3.profile
    with _LOADER_LOCK:
        core = botocore.session.get_session()
        loader = _shared_loader()
        core.register_component("data_loader", loader)
        try:
            return boto3.session.Session(botocore_session=core, profile_name=profile, **keys)
        except bce.ProfileNotFound as err:
            raise ConfigError(
                f"AWS_PROFILE={profile!r}: no such profile",
                hint="check ~/.aws/credentials and ~/.aws/config (or set AWS_ACCESS_KEY_ID)",
            ) from err
        finally:  # each boto3 session appends its data folder to the loader's paths
            loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))


def _config(options: S3Options, region: str) -> Config:
    s3 = options.settings
    # Without a custom endpoint botocore picks virtual-host addressing where it can ("auto");
    # with one, "auto" would mean path-style, so ask for virtual-host as WAL-G does.
    style = "path" if s3.force_path_style else ("virtual" if s3.endpoint else "auto")
    return Config(
        region_name=region,
        s3={"addressing_style": style},
        retries={"total_max_attempts": 1, "mode": "standard"},  # RetryPolicy retries
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        max_pool_connections=max(10, options.concurrency + 2),
        tcp_keepalive=True,
        proxies=dict(options.proxies) if options.proxies else None,
        user_agent_extra=f"walg/{__version__}",
    )


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False
