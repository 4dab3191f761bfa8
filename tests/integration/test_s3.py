"""S3 storage on a moto server: retries, multipart, resumed reads, settings, errors.

Faults come from :class:`FaultProxy` placed between the storage and moto; assertions about
what the server stored use a plain boto3 client straight to moto.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import pytest
from servers.faults import FaultProxy, OneWay, SeenRequest, one_way
from servers.s3 import (
    PREFIX,
    S3Maker,
    free_port,
    make_s3_storage,
    moto_server,
    raw_client,
    start_moto,
    stop_moto,
)
from structlog.testing import capture_logs

from walg.backup.claim import claim_name, confirm_claim, put_sentinel
from walg.config.settings import S3Settings, Secret, StorageSettings
from walg.errors import (
    BackupNameTaken,
    ObjectExists,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
)
from walg.storage.base import RetryPolicy
from walg.storage.s3 import S3Storage
from walg.storage.s3_errors import Where, delete_error, no_conditional_writes
from walg.storage.s3_multipart import (
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    MultipartUpload,
    PartSource,
)
from walg.storage.s3_region import ask_region

__all__ = ["make_s3_storage", "moto_server"]  # fixtures, imported for pytest

PART = MIN_PART_SIZE
BUDGET = 3  # max_retries of the tests' RetryPolicy: 4 attempts in all


@pytest.fixture
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's moto server."""
    where = urlsplit(moto_server)
    with FaultProxy(str(where.hostname), int(where.port or 80)) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def proxied(make_s3_storage: S3Maker, proxy: FaultProxy) -> S3Storage:
    """An S3 storage whose requests all go through the proxy."""
    return make_s3_storage(endpoint=proxy.url, part_size=PART)


def payload(size: int) -> bytes:
    return os.urandom(size)


def open_uploads(maker: S3Maker, storage: S3Storage) -> list[Any]:
    answer = maker.client.list_multipart_uploads(Bucket=storage.options.bucket)
    return list(answer.get("Uploads", []))


def assert_nothing_stored(maker: S3Maker, storage: S3Storage, key: str) -> None:
    with pytest.raises(ObjectNotFound):
        storage.stat_object(key)
    assert open_uploads(maker, storage) == []


OPERATIONS: dict[str, Callable[[S3Storage], object]] = {
    "put": lambda s: s.put_object("new", b"data"),
    "read": lambda s: s.read_bytes("ready"),
    "stat": lambda s: s.stat_object("ready"),
    "list": lambda s: list(s.list_objects()),
    "delete": lambda s: s.delete_objects(["ready"]),
}
FAULTS: dict[str, Callable[[FaultProxy, int], None]] = {
    "503": lambda p, k: p.fail_next(k, 503),
    "500": lambda p, k: p.fail_next(k, 500, code="InternalError"),
    "slowdown": lambda p, k: p.fail_next(k, 503, code="SlowDown"),
    "drop": lambda p, k: p.drop_next(k),
    "reset": lambda p, k: p.drop_next(k, reset=True),
}


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_transient_faults_within_budget_are_retried(
    proxied: S3Storage, proxy: FaultProxy, operation: str, fault: str
) -> None:
    """Each operation succeeds when fewer requests fail than the retry budget allows."""
    proxied.put_object("ready", b"ready")
    FAULTS[fault](proxy, BUDGET)
    OPERATIONS[operation](proxied)
    assert proxy.faults == BUDGET and proxy.pending == 0


@pytest.mark.parametrize("operation", OPERATIONS)
def test_faults_beyond_budget_raise_unavailable(
    make_s3_storage: S3Maker, proxied: S3Storage, proxy: FaultProxy, operation: str
) -> None:
    """Failing every attempt raises StorageUnavailable after exactly the budget of tries."""
    proxied.put_object("ready", b"ready")
    proxy.clear()
    proxy.fail_next(BUDGET + 1)
    with pytest.raises(StorageUnavailable):
        OPERATIONS[operation](proxied)
    assert proxy.count == BUDGET + 1 and proxy.pending == 0
    if operation == "put":
        assert_nothing_stored(make_s3_storage, proxied, "new")


def test_unrewindable_stream_is_retried_from_memory(proxied: S3Storage, proxy: FaultProxy) -> None:
    """A small upload from a stream that cannot seek is retried from its buffered bytes."""
    proxy.fail_next(BUDGET)
    proxied.put_object("one-way", one_way(b"x" * 1000))
    assert proxied.read_bytes("one-way") == b"x" * 1000


def test_permanent_errors_are_not_retried(proxied: S3Storage, proxy: FaultProxy) -> None:
    """A 403 answer is PermissionDenied at once, with a hint about credentials."""
    proxy.fail_next(BUDGET + 1, 403, code="AccessDenied")
    with pytest.raises(PermissionDenied) as caught:
        proxied.put_object("k", b"data")
    assert proxy.count == 1
    assert "AWS_ACCESS_KEY_ID" in caught.value.hint


# -- multipart uploads --------------------------------------------------------------------


def test_multipart_upload_retries_a_part(
    make_s3_storage: S3Maker, proxied: S3Storage, proxy: FaultProxy
) -> None:
    """A part that fails a few times is retried; the object is whole and multipart."""
    data = payload(3 * PART + PART // 2)
    proxy.fail_next(BUDGET, match=r"^PUT .*partNumber=3")
    proxied.put_object("big", one_way(data))
    assert proxied.read_bytes("big") == data
    head = make_s3_storage.client.head_object(Bucket=proxied.options.bucket, Key=f"{PREFIX}/big")
    assert head["ETag"].endswith('-4"')
    assert proxy.faults == BUDGET and open_uploads(make_s3_storage, proxied) == []


def test_failed_part_aborts_the_upload(
    make_s3_storage: S3Maker, proxied: S3Storage, proxy: FaultProxy
) -> None:
    """A part failing beyond the budget aborts the upload: no object, no open upload."""
    proxy.fail_next(100, 500, match=r"^PUT .*partNumber=2")
    with pytest.raises(StorageUnavailable):
        proxied.put_object("big", one_way(payload(3 * PART + 1000)))
    lines = [r.line for r in proxy.requests]
    assert sum("partNumber=2" in line for line in lines) == BUDGET + 1
    assert not any("POST" in line and "uploadId" in line for line in lines)  # never completed
    assert any(line.startswith("DELETE") and "uploadId" in line for line in lines)  # aborted
    assert_nothing_stored(make_s3_storage, proxied, "big")


def test_interrupted_stream_aborts_the_upload(make_s3_storage: S3Maker) -> None:
    """KeyboardInterrupt while reading the stream aborts the multipart upload."""
    storage = make_s3_storage(part_size=PART)
    with pytest.raises(KeyboardInterrupt):
        storage.put_object("big", one_way(payload(4 * PART), 3 * PART, KeyboardInterrupt()))
    assert_nothing_stored(make_s3_storage, storage, "big")


@pytest.mark.parametrize(("size", "multipart"), [(0, False), (PART, False), (PART + 1, True)])
def test_one_put_up_to_one_part(
    proxied: S3Storage, proxy: FaultProxy, size: int, multipart: bool
) -> None:
    """An object up to one part is one PutObject; one byte more is a multipart upload."""
    data = payload(size)
    proxied.put_object("obj", one_way(data))
    assert any("?uploads" in r.path for r in proxy.requests) == multipart
    assert proxied.read_bytes("obj") == data


class _SlowClient:
    """A fake S3 client whose parts take a while; it checks the memory bound as it goes."""

    meta = SimpleNamespace(config=SimpleNamespace(request_checksum_calculation="when_required"))

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.completed: list[int] = []

    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "u"}

    def upload_part(self, PartNumber: int, Body: bytes, **_: Any) -> dict[str, str]:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.02 * (PartNumber % 3))  # finish out of order
        with self.lock:
            self.in_flight -= 1
            self.sent += len(Body)
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, MultipartUpload: Any, **_: Any) -> None:
        self.completed = [p["PartNumber"] for p in MultipartUpload["Parts"]]

    def abort_multipart_upload(self, **_: Any) -> None:
        raise AssertionError("not expected")


def test_multipart_memory_is_bounded_and_parts_parallel() -> None:
    """At most concurrency+1 parts are in memory; parts go in parallel; complete is sorted."""
    client, concurrency = _SlowClient(), 3
    bound = (concurrency + 1) * PART

    class Checked(OneWay):
        def readinto(self, buffer: Any) -> int:
            n = super().readinto(buffer)
            assert self.position - client.sent <= bound
            return n

    upload = MultipartUpload(client, Where("b", "V"), "k", {}, concurrency, RetryPolicy())
    upload.run(_fits(PartSource(cast(BinaryIO, Checked(bytes(12 * PART + 7))), PART)))
    assert client.completed == list(range(1, 14))
    assert 1 < client.most_in_flight <= concurrency


def _fits(parts: PartSource) -> PartSource:
    assert not parts.fits_one_part()
    return parts


def test_part_size_grows_to_fit_s3_limits() -> None:
    """Part sizes double every 1000 parts, never exceed 5 GiB, and 10,000 hold 5 TiB."""
    parts = PartSource(io.BytesIO(), DEFAULT_PART_SIZE)
    assert parts.size_of(1000) == DEFAULT_PART_SIZE
    assert parts.size_of(1001) == 2 * DEFAULT_PART_SIZE
    assert max(parts.size_of(n) for n in range(1, 10_001)) == MAX_PART_SIZE
    assert sum(parts.size_of(n) for n in range(1, 10_001)) >= 5 << 40


# -- reads --------------------------------------------------------------------------------


def test_cut_download_resumes_with_a_range(proxied: S3Storage, proxy: FaultProxy) -> None:
    """A download cut mid-body resumes with a Range request; the bytes are exact."""
    data = payload(3 << 20)
    proxied.put_object("obj", data)
    proxy.clear()
    proxy.cut_next(1, after=1_000_000, match="^GET ")
    with proxied.read_object("obj") as stream:
        got = b"".join(iter(lambda: stream.read(1 << 16), b""))
    assert got == data
    gets = [r for r in proxy.requests if r.method == "GET"]
    assert len(gets) == 2 and "range" not in gets[0].headers
    offset = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= 1_000_000


# -- settings reach the server ------------------------------------------------------------


def test_path_style_addressing(proxied: S3Storage, proxy: FaultProxy) -> None:
    """AWS_S3_FORCE_PATH_STYLE puts the bucket in the path, the endpoint in Host."""
    proxied.put_object("k", b"x")
    seen = proxy.requests[-1]
    assert seen.path == f"/{proxied.options.bucket}/{PREFIX}/k"
    assert seen.headers["host"] == f"127.0.0.1:{proxy.port}"


def test_virtual_host_addressing(make_s3_storage: S3Maker, proxy: FaultProxy) -> None:
    """Without path style the bucket is in the Host header (moto resolves it), not the path."""
    storage = make_s3_storage(
        endpoint="http://s3.amazonaws.com", force_path_style=False, proxies={"http": proxy.url}
    )
    storage.put_object("k", b"virtual")
    seen = proxy.requests[-1]
    assert seen.headers["host"] == f"{storage.options.bucket}.s3.amazonaws.com"
    assert seen.path == f"/{PREFIX}/k"
    got = make_s3_storage.client.get_object(Bucket=storage.options.bucket, Key=f"{PREFIX}/k")
    assert got["Body"].read() == b"virtual"


@pytest.mark.parametrize("size", [10, 2 * PART + 1], ids=["put", "multipart"])
@pytest.mark.parametrize(
    "sse",
    [("AES256", None), ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/walg")],
    ids=["aes256", "kms"],
)
def test_storage_class_and_encryption_reach_the_server(
    make_s3_storage: S3Maker, proxy: FaultProxy, size: int, sse: tuple[str, str | None]
) -> None:
    """WALG_S3_STORAGE_CLASS, WALG_S3_SSE and WALG_S3_SSE_KMS_ID are recorded by S3."""
    storage = make_s3_storage(
        endpoint=proxy.url,
        part_size=PART,
        storage_class="STANDARD_IA",
        sse=sse[0],
        sse_kms_id=sse[1],
    )
    storage.put_object("k", one_way(payload(size)))
    head = make_s3_storage.client.head_object(Bucket=storage.options.bucket, Key=f"{PREFIX}/k")
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == sse[0]
    assert head.get("SSEKMSKeyId") == sse[1]
    first = proxy.requests[0].headers  # PutObject or CreateMultipartUpload
    assert first["x-amz-storage-class"] == "STANDARD_IA"
    assert first["x-amz-server-side-encryption"] == sse[0]


def test_from_settings_with_an_endpoint_asks_no_region(
    make_s3_storage: S3Maker, moto_server: str
) -> None:
    """from_settings opens s3://bucket/path; with AWS_ENDPOINT and no AWS_REGION the client
    signs for us-east-1 without asking S3 (as WAL-G does for S3-compatible services)."""
    bucket = make_s3_storage.new_bucket("eu-west-1")
    where = StorageSettings("s3", bucket, "walg/pfx", "WALE_S3_PREFIX", f"s3://{bucket}/walg/pfx")
    s3 = S3Settings(
        access_key_id=Secret("testing"),
        secret_access_key=Secret("testing"),
        endpoint=moto_server,
        force_path_style=True,
        max_retries=2,
    )
    storage = S3Storage.from_settings(where, s3, concurrency=2)
    storage.put_object("k", b"x")
    assert storage.url == f"s3://{bucket}/walg/pfx/"
    assert storage.retry.max_retries == 2
    assert storage.client.meta.region_name == "us-east-1"
    assert make_s3_storage.client.get_object(Bucket=bucket, Key="walg/pfx/k")["Body"].read() == b"x"


def test_region_is_asked_once_without_an_endpoint(
    make_s3_storage: S3Maker, moto_server: str
) -> None:
    """Without AWS_ENDPOINT nor AWS_REGION the bucket's region is asked of S3 once; a lookup
    that fails (here: nothing listens) gives us-east-1 at once, without retries."""
    bucket = make_s3_storage.new_bucket("eu-west-1")
    assert ask_region(raw_client(moto_server), bucket, "WALG_S3_PREFIX") == "eu-west-1"
    started = time.monotonic()
    assert ask_region(raw_client(f"http://127.0.0.1:{free_port()}"), bucket, "V") == "us-east-1"
    assert time.monotonic() - started < 5


def test_storage_pickles_without_its_client(make_s3_storage: S3Maker) -> None:
    """A storage (and a sub-folder) crosses a process boundary and makes a new client."""
    storage = make_s3_storage()
    storage.put_object("sub/k", b"x")
    copy = pickle.loads(pickle.dumps(storage.sub_folder("sub")))
    assert copy.client is not storage.client
    assert copy.read_bytes("k") == b"x"


# -- listings -----------------------------------------------------------------------------


def test_more_than_1000_keys_list_and_delete_completely(
    make_s3_storage: S3Maker, proxied: S3Storage, proxy: FaultProxy
) -> None:
    """1,050 keys list completely and in order (over pages, resuming after a fault), and
    delete completely."""
    names = [f"k/{i:04d}" for i in range(1000)] + [f"k/sub/{i:04d}" for i in range(50)]
    bucket = proxied.options.bucket
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: make_s3_storage.client.put_object(
                    Bucket=bucket, Key=f"{PREFIX}/{n}", Body=b"x"
                ),
                names,
            )
        )
    proxy.fail_next(1, match="continuation-token")
    assert [o.name for o in proxied.list_objects("k/")] == sorted(names)
    listing = proxied.list_folder("k")
    assert len(listing.objects) == 1000 and listing.folders == ("sub",)
    assert proxy.faults == 1
    assert proxied.delete_objects(names) == 1050
    assert list(proxied.list_objects()) == []
    assert make_s3_storage.client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_fault_proxy_stops_its_threads(moto_server: str) -> None:
    """Leaving a FaultProxy closes idle client connections and joins all of its threads."""
    where = urlsplit(moto_server)
    with FaultProxy(str(where.hostname), int(where.port or 80)) as fault_proxy:
        idle = socket.create_connection(("127.0.0.1", fault_proxy.port))
        time.sleep(0.1)  # let the proxy start serving it
    try:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("fault-proxy")]
        assert alive == []
        assert idle.recv(1) == b""  # closed by the proxy
    finally:
        idle.close()


# -- services without conditional writes --------------------------------------------------

NAMING = "The If-None-Match header is not supported"
# How S3-compatible services refuse If-None-Match: (status, code, message).
REFUSALS = {
    "501": (
        501,
        "NotImplemented",
        "A header you provided implies functionality that is not implemented",
    ),
    "invalid-argument": (400, "InvalidArgument", NAMING),
    "invalid-request": (400, "InvalidRequest", NAMING),
}


def conditional_put(request: SeenRequest) -> bool:
    return request.method == "PUT" and "if-none-match" in request.headers


def refuse_conditional_writes(proxy: FaultProxy, refusal: str) -> None:
    status, code, message = REFUSALS[refusal]
    proxy.fail_next(100, status, code=code, message=message, match=conditional_put)


def fallback_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if "no conditional writes" in e["event"]]


@pytest.mark.parametrize("refusal", REFUSALS)
def test_put_new_without_conditional_writes_checks_then_puts(
    proxied: S3Storage, proxy: FaultProxy, refusal: str
) -> None:
    """A service refusing If-None-Match as unsupported gets a check then a plain PUT: the
    key is created once, an existing key is ObjectExists, and one warning is logged."""
    refuse_conditional_writes(proxy, refusal)
    folder = proxied.sub_folder("basebackups_005/base_000000010000000000000002")
    with capture_logs() as logs:
        folder.put_new("claim", b"first")
        with pytest.raises(ObjectExists):
            folder.put_new("claim", b"second")
        proxied.put_new("other", b"other")
    assert folder.read_bytes("claim") == b"first"
    assert proxied.read_bytes("other") == b"other"
    assert proxy.faults == 1  # the storage and its sub-folder remember the service's answer
    assert len(fallback_warnings(logs)) == 1


def test_backup_name_claimed_once_without_conditional_writes(
    proxied: S3Storage, proxy: FaultProxy
) -> None:
    """On a service without conditional writes backup-push still claims a name: a second
    claim on it is refused, and the first push commits its sentinel."""
    refuse_conditional_writes(proxy, "501")
    name = "base_000000010000000000000002"
    claim = claim_name(proxied, name)
    with pytest.raises(BackupNameTaken):
        claim_name(proxied, name)
    confirm_claim(proxied, claim)
    put_sentinel(proxied, claim, b"{}")


def test_other_bad_requests_are_no_fallback(
    make_s3_storage: S3Maker, proxied: S3Storage, proxy: FaultProxy
) -> None:
    """A 400 InvalidArgument that does not name If-None-Match is an error of put_new, not
    retried and not followed by an unconditional PUT."""
    proxy.fail_next(1, 400, code="InvalidArgument", message="Invalid storage class")
    with pytest.raises(StorageError, match="Invalid storage class"):
        proxied.put_new("claim", b"first")
    assert proxy.count == 1
    assert_nothing_stored(make_s3_storage, proxied, "claim")


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (501, "NotImplemented", "", True),
        (501, "", "", True),  # an answer without a body (HEAD-like proxies)
        (400, "InvalidArgument", "", False),
        (400, "InvalidRequest", "if-none-match: not supported", True),
        (400, "MalformedXML", NAMING, False),
        (412, "PreconditionFailed", "At least one of the pre-conditions failed", False),
    ],
)
def test_no_conditional_writes_rule(status: int, code: str, message: str, expected: bool) -> None:
    """Which error answers to a conditional PUT mean that the service lacks the feature."""
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    assert no_conditional_writes(response) is expected


def test_not_implemented_is_not_retried(proxied: S3Storage, proxy: FaultProxy) -> None:
    """A 501 NotImplemented answer is a StorageError at once: retrying cannot help."""
    proxy.fail_next(BUDGET + 1, 501, code="NotImplemented")
    with pytest.raises(StorageError) as caught:
        proxied.put_object("k", b"data")
    assert type(caught.value) is StorageError and proxy.count == 1


# -- errors -------------------------------------------------------------------------------


def test_missing_bucket_names_the_prefix_variable(make_s3_storage: S3Maker) -> None:
    """A missing bucket is a StorageError (not retried) whose hint names WALG_S3_PREFIX."""
    storage = make_s3_storage(create=False)
    for operation in (OPERATIONS["put"], OPERATIONS["read"], OPERATIONS["list"]):
        with pytest.raises(StorageError) as caught:
            operation(storage)
        assert type(caught.value) is StorageError
        assert "WALG_S3_PREFIX" in caught.value.hint
    with pytest.raises(ObjectNotFound):  # HEAD answers carry no error code: only "404"
        storage.stat_object("ready")


def test_missing_object_is_object_not_found(make_s3_storage: S3Maker) -> None:
    """Reading or statting a missing key raises ObjectNotFound naming the key."""
    storage = make_s3_storage()
    for operation in (OPERATIONS["read"], OPERATIONS["stat"]):
        with pytest.raises(ObjectNotFound, match="ready"):
            operation(storage)


@pytest.mark.parametrize(
    ("code", "expected"),
    [("AccessDenied", PermissionDenied), ("SlowDown", StorageUnavailable), ("X", StorageError)],
)
def test_per_key_delete_errors(code: str, expected: type[StorageError]) -> None:
    """A DeleteObjects answer listing failed keys is an error of the first key's kind."""
    errors = [{"Key": "p/a", "Code": code, "Message": "no"}, {"Key": "p/b", "Code": code}]
    error = delete_error(errors, 5, Where("bucket", "WALG_S3_PREFIX"))
    assert type(error) is expected
    assert "2 of 5" in error.msg and "s3://bucket/p/a" in error.msg


@pytest.fixture(scope="module")
def auth_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Any]]:
    """A moto server that checks credentials after its first three requests: a bucket,
    an IAM user and its access key are made first. Yields (endpoint, bucket, key)."""
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    process, url = start_moto(tmp_path_factory.mktemp("moto-auth") / "moto.log", env)
    try:
        import boto3

        maker = S3Maker(url)
        bucket = maker.new_bucket()
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="walg")
        key = iam.create_access_key(UserName="walg")["AccessKey"]
        yield url, bucket, key
    finally:
        stop_moto(process)


@pytest.mark.parametrize("credentials", ["unknown key", "wrong secret", "no policy"])
def test_credential_errors_are_permission_denied(
    auth_moto: tuple[str, str, Any], credentials: str
) -> None:
    """InvalidAccessKeyId, SignatureDoesNotMatch and AccessDenied from moto are
    PermissionDenied, with a hint, and without the secret in the message."""
    url, bucket, key = auth_moto
    keys = {
        "unknown key": ("AKIAUNKNOWN000000000", "not-a-real-secret"),
        "wrong secret": (key["AccessKeyId"], "not-the-right-secret"),
        "no policy": (key["AccessKeyId"], key["SecretAccessKey"]),
    }[credentials]
    storage = S3Maker(url)(bucket=bucket, access_key_id=keys[0], secret_access_key=keys[1])
    for operation in (OPERATIONS["put"], OPERATIONS["list"], OPERATIONS["stat"]):
        with pytest.raises(PermissionDenied) as caught:
            operation(storage)
        assert keys[1] not in caught.value.msg + caught.value.hint
        assert "AWS_SECRET_ACCESS_KEY" in caught.value.hint
