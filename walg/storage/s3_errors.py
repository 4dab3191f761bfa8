"""Translation of boto3/botocore/urllib3 errors into the storage errors of walg.

Imported only by :mod:`walg.storage.s3` (so only when S3 storage is opened). Messages name
the operation, the bucket and the key; they never contain credentials (S3's error
``Message`` carries none, and request signatures are not part of botocore's exceptions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from botocore import exceptions as bce
from urllib3 import exceptions as u3e

from walg.errors import (
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
    StorageUnreachable,
    WalgError,
)

__all__ = [
    "RETRYABLE_CODES",
    "Where",
    "client_error",
    "delete_error",
    "no_conditional_writes",
    "translate",
    "translated",
]

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "403",
    }
)
RETRYABLE_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)
# Answers by which a service refuses a PUT's ``If-None-Match: *`` as a request it does not
# support (some S3-compatible services), rather than as a key that exists (412).
_UNSUPPORTED_CODES = frozenset({"NotImplemented"})
_BAD_ARGUMENT_CODES = frozenset({"InvalidArgument", "InvalidRequest"})
_CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (or AWS_PROFILE and "
    "~/.aws/credentials), and that they may access the bucket"
)
_UNREACHABLE_HINT = (
    "check that the S3 service is up and reachable from this host (AWS_ENDPOINT, AWS_REGION, "
    "DNS, firewall, HTTPS_PROXY); WALG_STORAGE_RETRY_BUDGET sets how long each call retries"
)
# Transport failures: the request may not have reached S3, or its answer was cut.
_TRANSIENT: tuple[type[BaseException], ...] = (
    bce.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    bce.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError
    bce.IncompleteReadError,
    u3e.ProtocolError,
    u3e.TimeoutError,
    ConnectionError,  # ConnectionResetError, BrokenPipeError, ...
    TimeoutError,
)


class Where:
    """The bucket, and how the user named it (for hints): ``WALG_S3_PREFIX`` etc."""

    def __init__(self, bucket: str, variable: str) -> None:
        self.bucket = bucket
        self.variable = variable

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def translate(err: BaseException, op: str, key: str, where: Where) -> StorageError:
    """The walg error for ``err``, raised by S3 operation ``op`` on ``key``."""
    target = where.url(key)
    doing = _doing(op, target)
    if isinstance(err, StorageError):
        return err
    if isinstance(err, bce.ClientError):
        return client_error(err.response, op, key, where)
    if isinstance(err, bce.NoCredentialsError | bce.PartialCredentialsError):
        return PermissionDenied(f"S3 {doing}: no AWS credentials", _CREDENTIALS_HINT)
    if isinstance(err, bce.SSLError) and "certificate" in str(err).lower():
        return StorageError(
            f"S3 {doing}: TLS certificate of the endpoint not trusted",
            hint="check AWS_ENDPOINT and the system's CA certificates",
        )
    unreachable = _unreachable(err)
    if unreachable:
        return StorageUnreachable(f"{unreachable} ({doing})", _UNREACHABLE_HINT)
    if isinstance(err, _TRANSIENT):
        return StorageUnavailable(f"S3 {doing} failed: {type(err).__name__}: {err}")
    return StorageError(f"S3 {doing} failed: {type(err).__name__}: {err}")


def _doing(op: str, target: str) -> str:
    """``list of s3://b/k``; an ``op`` that ends in "of" already gets no second one."""
    return f"{op} {target}" if op.endswith(" of") else f"{op} of {target}"


def _unreachable(err: BaseException) -> str:
    """What went wrong, for a DBA, when no connection to S3 (or its proxy) was made:
    "S3 at http://host:port/ refused the connection"; "" for any other error."""
    if not isinstance(err, bce.ConnectionError):  # botocore's: connect-time failures only
        return ""
    kwargs = getattr(err, "kwargs", {}) or {}
    if isinstance(err, bce.ProxyConnectionError):
        return f"the proxy {_origin(str(kwargs.get('proxy_url', '')))} for S3 cannot be reached"
    where = f"S3 at {_origin(str(kwargs.get('endpoint_url', '')))}"
    if isinstance(err, bce.ConnectTimeoutError):
        return f"{where} did not accept the connection in time (connect timeout)"
    cause = str(kwargs.get("error", "")).lower()
    if "refused" in cause:
        return f"{where} refused the connection"
    if "resolve" in cause or "name or service" in cause or "nodename" in cause:
        return f"{where} cannot be reached: its host name does not resolve"
    return f"{where} cannot be reached"


def _origin(url: str) -> str:
    """``scheme://host:port/`` of a request URL (no path, query or credentials)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'https'}://{host}{port}/"


def client_error(response: dict[str, Any], op: str, key: str, where: Where) -> StorageError:
    """The walg error for an S3 error answer (a ClientError's ``response``)."""
    error = response.get("Error") or {}
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or "")[:200]
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    target = where.url(key)
    doing = _doing(op, target)
    detail = f"{code or status}" + (f": {message}" if message else "")
    if code == "NoSuchBucket":
        return StorageError(
            f"S3 bucket {where.bucket!r} does not exist ({doing})",
            hint=f"check the bucket name in {where.variable}, and AWS_ENDPOINT / AWS_REGION",
        )
    if code in NOT_FOUND_CODES or (status == 404 and code not in ("NoSuchUpload",)):
        return ObjectNotFound(f"no object {target}")
    if code in DENIED_CODES or status == 403:
        return PermissionDenied(f"S3 {doing} denied: {detail}", _CREDENTIALS_HINT)
    if code in _UNSUPPORTED_CODES or status == 501:  # permanent: retrying cannot help
        return StorageError(f"S3 {doing} not supported by the service: {detail}")
    if code in RETRYABLE_CODES or status >= 500 or status == 429:
        return StorageUnavailable(f"S3 {doing} failed: {detail} (HTTP {status})")
    return StorageError(f"S3 {doing} failed: {detail} (HTTP {status})")


def no_conditional_writes(response: dict[str, Any]) -> bool:
    """Whether an error answer to a PUT with ``If-None-Match: *`` means that the service
    does not implement conditional writes: 501 NotImplemented, or a 400 InvalidArgument /
    InvalidRequest whose message (or ArgumentName / Header element) names the header."""
    error = response.get("Error") or {}
    code = str(error.get("Code") or "")
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    if code in _UNSUPPORTED_CODES or status == 501:
        return True
    said = " ".join(str(value) for value in error.values()).lower()
    return code in _BAD_ARGUMENT_CODES and "if-none-match" in said


def delete_error(errors: list[dict[str, Any]], asked: int, where: Where) -> StorageError:
    """The error for the per-key ``Errors`` of a DeleteObjects answer (by the first one)."""
    first = errors[0]
    status = 503 if str(first.get("Code", "")) in RETRYABLE_CODES else 0
    response = {"Error": first, "ResponseMetadata": {"HTTPStatusCode": status}}
    op = f"delete ({len(errors)} of {asked} objects failed)"
    return client_error(response, op, str(first.get("Key", "")), where)


@contextlib.contextmanager
def translated(op: str, key: str, where: Where) -> Iterator[None]:
    """Raise the walg error for any exception escaping the block (walg's own errors, and
    BaseExceptions such as KeyboardInterrupt, pass through)."""
    try:
        yield
    except WalgError:
        raise
    except Exception as err:
        raise translate(err, op, key, where) from err
