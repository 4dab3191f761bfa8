"""The HTTP side of the GCS backend: error translation and the streaming download.

google-cloud-storage raises ``google.api_core.exceptions`` for HTTP errors and lets
``requests``/``urllib3`` connection errors through; the data path (downloads and resumable
uploads) talks HTTP itself through an authorized ``requests`` session. Both end up here as
walg's storage errors. Messages name the operation, the object and the HTTP status; never
a URL (an upload session URL is a bearer capability) and never a credential.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from typing import Any

from walg.errors import (
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
    StorageUnreachable,
)
from walg.storage.base import ObjectVersion, ReadStream

__all__ = [
    "CREDENTIALS_HINT",
    "HttpReader",
    "Where",
    "generations",
    "response_detail",
    "sdk_errors",
    "status_error",
    "translate",
    "translated",
]

CREDENTIALS_HINT = (
    "check GOOGLE_APPLICATION_CREDENTIALS (a service account JSON file) or the application "
    "default credentials, and that they may read, write and delete objects in the bucket"
)
_UNREACHABLE_HINT = (
    "check that GCS (or STORAGE_EMULATOR_HOST) is up and reachable from this host (DNS, "
    "firewall, HTTPS_PROXY); WALG_STORAGE_RETRY_BUDGET sets how long each call retries"
)
_TRANSIENT_STATUS = frozenset({408, 429})
_DETAIL_LIMIT = 200
_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+: ")


def generations(client: Any, bucket: Any, prefix: str, timeout: Any) -> Iterator[ObjectVersion]:
    """Every generation of the objects under ``prefix`` (``versions=true``); a noncurrent
    one has a ``timeDeleted``. GCS has no delete markers. ``versions`` is sent as "true":
    the SDK would send a bool as "True", which fake-gcs-server reads as false."""
    blobs = client.list_blobs(
        bucket, prefix=prefix or None, versions="true", retry=None, timeout=timeout
    )
    for blob in sorted(blobs, key=lambda b: (b.name, -int(b.generation))):
        if not blob.name.endswith("/"):  # a console "folder" placeholder
            size, latest = int(blob.size or 0), blob.time_deleted is None
            yield ObjectVersion(blob.name, size, blob.updated, str(blob.generation), latest)


class Where:
    """Names objects of one bucket in messages: ``gs://bucket/key``."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def url(self, key: str = "") -> str:
        return f"gs://{self.bucket}/{key}"


@functools.cache
def sdk_errors() -> tuple[type[BaseException], ...]:
    """The exception types of the libraries under the backend (imported on first use)."""
    import requests
    import urllib3
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError
    from google.resumable_media.common import InvalidResponse

    return (
        GoogleAPICallError,
        GoogleAuthError,
        InvalidResponse,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    )


def status_error(status: int, what: str, url: str, detail: str = "") -> StorageError:
    """The walg error for an HTTP error ``status`` of operation ``what`` on ``url``."""
    msg = f"cannot {what} {url}: HTTP {status}" + (f" {detail}" if detail else "")
    if status == 404:
        return ObjectNotFound(f"no object {url}" if what in ("read", "stat") else msg)
    if status in (401, 403):
        return PermissionDenied(msg, hint=CREDENTIALS_HINT)
    if status in _TRANSIENT_STATUS or status >= 500:
        return StorageUnavailable(msg)
    return StorageError(msg)


def response_detail(response: Any) -> str:
    """The error message of a JSON API error response, if it has one."""
    try:
        return str(response.json()["error"]["message"])[:_DETAIL_LIMIT]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def translate(err: BaseException, what: str, url: str) -> StorageError:
    """Turn an exception of google-cloud-storage, google-resumable-media, google-auth,
    requests or urllib3 into ours."""
    import requests
    import urllib3
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import RefreshError, TransportError
    from google.resumable_media.common import InvalidResponse

    if isinstance(err, StorageError):
        return err
    if isinstance(err, GoogleAPICallError) and err.code is not None:
        return status_error(int(err.code), what, url, _api_detail(err))
    if isinstance(err, InvalidResponse):  # an unexpected status, or a 308 without Range
        status = int(getattr(err.response, "status_code", 0) or 0)
        if status in (200, 201, 308):
            return StorageUnavailable(f"cannot {what} {url}: unexpected answer (HTTP {status})")
        return status_error(status, what, url, response_detail(err.response))
    if isinstance(err, RefreshError) and not getattr(err, "retryable", False):
        return PermissionDenied(
            f"cannot {what} {url}: the Google credentials were refused", hint=CREDENTIALS_HINT
        )
    # Only the exception's type goes into the message: its text can hold a request URL,
    # and the URL of an upload session is a credential for that upload.
    name = type(err).__name__
    unreachable = _unreachable(err)
    if unreachable:
        return StorageUnreachable(f"{unreachable} (cannot {what} {url})", _UNREACHABLE_HINT)
    if isinstance(err, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
        return StorageUnavailable(f"cannot {what} {url}: timed out ({name})")
    transient = (
        RefreshError,
        TransportError,
        requests.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        OSError,
    )
    if isinstance(err, transient):
        return StorageUnavailable(f"cannot {what} {url}: connection failed or cut ({name})")
    return StorageError(f"cannot {what} {url}: {name}")


def _unreachable(err: BaseException) -> str:
    """What went wrong, for a DBA, when no connection to GCS was made ("GCS at
    http://host:port/ refused the connection"); "" for any other error. Only the origin of
    the request's URL is named (the rest may be an upload session's capability)."""
    import requests

    if not isinstance(err, requests.ConnectionError) or isinstance(err, requests.ReadTimeout):
        return ""
    request = getattr(err, "request", None)
    where = f"GCS at {_origin(str(getattr(request, 'url', '') or ''))}"
    if isinstance(err, requests.ConnectTimeout):
        return f"{where} did not accept the connection in time (connect timeout)"
    cause = str(err).lower()
    if "refused" in cause:
        return f"{where} refused the connection"
    if "resolve" in cause or "name or service" in cause or "nodename" in cause:
        return f"{where} cannot be reached: its host name does not resolve"
    if "newconnectionerror" in cause or "failed to establish" in cause:
        return f"{where} cannot be reached"
    return ""  # a connection cut after it was made: transient, not unreachable


def _origin(url: str) -> str:
    """``scheme://host:port/`` of a request URL (GCS's own when the URL is unknown)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return "https://storage.googleapis.com/"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/"


def _api_detail(err: Any) -> str:
    """The server's reason without the request line (``GET https://...: reason``)."""
    text = _REQUEST_LINE.sub("", str(getattr(err, "message", "") or ""), count=1)
    return text[:_DETAIL_LIMIT]


@contextlib.contextmanager
def translated(what: str, url: str) -> Iterator[None]:
    """Re-raise the libraries' exceptions inside the block as walg storage errors."""
    try:
        yield
    except StorageError:
        raise
    except sdk_errors() as err:
        raise translate(err, what, url) from err


class HttpReader(ReadStream):
    """The body of a streamed HTTP response, read as it arrives.

    A connection cut, a timeout or a body shorter than announced raises StorageUnavailable,
    so :class:`walg.storage.base.Storage` reopens the object where the stream stopped.
    """

    def __init__(self, response: Any, url: str) -> None:
        super().__init__()
        self._response = response
        self._raw = response.raw
        self._url = url

    def read(self, size: int | None = -1) -> bytes:
        amount = None if size is None or size < 0 else size
        with translated("read", self._url):
            return bytes(self._raw.read(amount, decode_content=False))

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()
