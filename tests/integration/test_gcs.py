"""GCS storage on fake-gcs-server: layout, upload paths, retries, resumed reads, errors.

The common storage contract runs in tests/contract; these tests cover what is particular to
GCS. Faults come from :class:`FaultProxy` between the storage and the emulator; what the
emulator stored is checked with plain requests straight to it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import pickle
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from servers.faults import FaultProxy, SeenRequest
from servers.gcs import (
    FAST_RETRY,
    create_bucket,
    gcs_emulator,
    gcs_resume_emulator,
    make_gcs_storage,
)
from servers.streams import PatternStream

from walg.config import load
from walg.errors import (
    ConfigError,
    IntegrityError,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
)
from walg.storage import open_storage
from walg.storage.base import RetryPolicy
from walg.storage.gcs import GcsOptions, GcsStorage
from walg.storage.gcs_upload import CHUNK_UNIT, ChunkWindow, ResumableUpload

__all__ = ["gcs_emulator", "gcs_resume_emulator", "make_gcs_storage"]  # fixtures, for pytest

MiB = 1 << 20
BUDGET = FAST_RETRY.max_retries  # 3 retries: 4 attempts in all
Maker = Callable[..., GcsStorage]


def gcs_pattern(size: int) -> PatternStream:
    """The pattern stream of these tests (seeded apart from the contract suite's)."""
    return PatternStream(size, b"gcs")


def pattern(size: int) -> bytes:
    """All the bytes of ``PatternStream(size)``."""
    stream = gcs_pattern(size)
    return b"".join(iter(lambda: stream.read(MiB), b""))


def stored_names(endpoint: str, bucket: str) -> list[str]:
    """Object names in ``bucket`` as the emulator lists them."""
    answer = requests.get(f"{endpoint}/storage/v1/b/{bucket}/o", timeout=10)
    answer.raise_for_status()
    return [item["name"] for item in answer.json().get("items") or []]


@pytest.fixture
def proxy(gcs_emulator: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the emulator."""
    address = urlsplit(gcs_emulator)
    with FaultProxy(address.hostname or "127.0.0.1", address.port or 80) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def resume_proxy(gcs_resume_emulator: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of gcp-storage-emulator, which answers upload status queries
    (``bytes */*``) as GCS does (fake-gcs-server commits the upload instead)."""
    address = urlsplit(gcs_resume_emulator)
    with FaultProxy(address.hostname or "127.0.0.1", address.port or 80) as fault_proxy:
        yield fault_proxy


def on_resume_emulator(make: Maker, endpoint: str, proxy: FaultProxy, **options: Any) -> GcsStorage:
    """A storage on a fresh bucket of the emulator at ``endpoint``, through ``proxy``."""
    bucket = f"walg-{uuid.uuid4().hex[:16]}"
    create_bucket(endpoint, bucket)
    return make(emulator_host=proxy.url, bucket=bucket, create=False, **options)


def content_range(request: SeenRequest) -> str:
    return request.headers.get("content-range", "")


# -- layout and upload paths --------------------------------------------------------------


def test_objects_live_under_the_prefix_path(make_gcs_storage: Maker, gcs_emulator: str) -> None:
    """Keys are stored as path/<key> in the bucket, and the URL is gs://bucket/path/."""
    storage = make_gcs_storage(path="/walg/cluster-1/")
    storage.put_object("wal_005/000000010000000000000001.lz4", b"wal")
    storage.sub_folder("basebackups_005").put_object("base_1/metadata.json", b"{}")
    bucket = storage.options.bucket
    assert storage.url == f"gs://{bucket}/walg/cluster-1/"
    assert stored_names(gcs_emulator, bucket) == [
        "walg/cluster-1/basebackups_005/base_1/metadata.json",
        "walg/cluster-1/wal_005/000000010000000000000001.lz4",
    ]


def test_small_objects_take_one_request(make_gcs_storage: Maker, proxy: FaultProxy) -> None:
    """An object up to single_request_limit is one multipart upload; one byte more is resumable."""
    storage = make_gcs_storage(emulator_host=proxy.url, single_request_limit=256 << 10)
    storage.put_object("small", pattern(256 << 10))
    assert [r.line.split("?")[1] for r in proxy.requests] == ["uploadType=multipart"]
    proxy.clear()
    storage.put_object("larger", pattern((256 << 10) + 1))
    lines = [r.line for r in proxy.requests]
    assert "uploadType=resumable" in lines[0] and lines[0].startswith("POST ")
    assert all(line.startswith("PUT ") for line in lines[1:])
    assert storage.read_bytes("larger") == pattern((256 << 10) + 1)


def test_large_object_goes_up_resumably_byte_exact(
    make_gcs_storage: Maker, proxy: FaultProxy
) -> None:
    """40 MiB from a non-seekable stream goes up in 1 MiB chunks (plus the empty final
    request an exact multiple needs) and reads back byte-exact."""
    size = 40 * MiB
    storage = make_gcs_storage(emulator_host=proxy.url, chunk_size=MiB)
    storage.put_object("big", gcs_pattern(size))
    ranges = [content_range(r) for r in proxy.requests if r.method == "PUT"]
    assert len(ranges) == 41
    assert ranges[0] == f"bytes 0-{MiB - 1}/*"
    assert ranges[-1] == f"bytes */{size}"
    digest = hashlib.sha256()
    with storage.read_object("big") as stream:
        while chunk := stream.read(MiB):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
    assert storage.stat_object("big").size == size


def test_listing_resumes_after_a_key(make_gcs_storage: Maker) -> None:
    """The list primitive starts strictly after ``after`` (GCS's start_offset is inclusive),
    across nested prefixes and past 1,000 keys."""
    storage = make_gcs_storage(path="p")
    keys = [f"wal_005/{i // 100:02d}/{i:05d}" for i in range(1_200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: storage.put_object(key, b"."), keys))
    assert [o.name for o in storage.list_objects("wal_005/")] == keys
    after = storage._list("p/wal_005/", "p/" + keys[1_099])
    assert [o.name for o in after] == ["p/" + key for key in keys[1_100:]]
    assert [o.name for o in storage.list_objects("wal_005/03/")] == keys[300:400]


def test_listing_follows_page_tokens(make_gcs_storage: Maker, proxy: FaultProxy) -> None:
    """More keys than one page (1,000) are listed in two requests, the second with the
    first's pageToken, and none is missed or repeated."""
    storage = make_gcs_storage()
    keys = [f"w/{i:05d}" for i in range(1_050)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: storage.put_object(key, b"."), keys))
    via_proxy = make_gcs_storage(
        emulator_host=proxy.url, bucket=storage.options.bucket, create=False
    )
    assert [o.name for o in via_proxy.list_objects("w/")] == keys
    lists = [r.line for r in proxy.requests if r.line.startswith("GET /storage/v1/b/")]
    assert len(lists) == 2 and "pageToken=" not in lists[0] and "pageToken=" in lists[1]


def test_deletes_go_in_batches_of_a_hundred(make_gcs_storage: Maker, proxy: FaultProxy) -> None:
    """250 keys (some missing) are deleted with three batch requests, and all are gone."""
    storage = make_gcs_storage()
    keys = [f"d/{i:03d}" for i in range(250)]
    for key in keys[:240]:
        storage.put_object(key, b".")
    storage.put_object("kept", b"kept")
    via_proxy = make_gcs_storage(
        emulator_host=proxy.url, bucket=storage.options.bucket, create=False
    )
    assert via_proxy.delete_objects(keys) == 250
    assert [r.line for r in proxy.requests] == ["POST /batch/storage/v1"] * 3
    assert [o.name for o in storage.list_objects()] == ["kept"]


def test_storage_pickles_without_its_client(make_gcs_storage: Maker) -> None:
    """A storage crosses a process boundary as its options and makes a new client there."""
    storage = make_gcs_storage()
    storage.put_object("sub/k", b"value")
    clone = pickle.loads(pickle.dumps(storage.sub_folder("sub")))
    assert clone._clients._made is None
    assert clone.read_bytes("k") == b"value"


def test_read_from_an_offset_at_the_end_is_empty(make_gcs_storage: Maker) -> None:
    """Reopening a read at the object's end (a resumed read that had everything) gives b''."""
    storage = make_gcs_storage()
    storage.put_object("k", b"12345")
    with storage._read(storage._full("k"), 5) as stream:
        assert stream.read() == b""
    with storage._read(storage._full("k"), 2) as stream:
        assert stream.read() == b"345"


# -- retries and faults -------------------------------------------------------------------


def test_small_put_retries_within_the_budget(make_gcs_storage: Maker, proxy: FaultProxy) -> None:
    """Three 503s on a small upload are retried and the fourth attempt stores the object."""
    storage = make_gcs_storage(emulator_host=proxy.url)
    proxy.fail_next(BUDGET, 503, match="uploadType=multipart")
    storage.put_object("k", b"value")
    assert proxy.faults == BUDGET
    assert storage.read_bytes("k") == b"value"


def test_small_put_beyond_the_budget_fails_and_stores_nothing(
    make_gcs_storage: Maker, proxy: FaultProxy
) -> None:
    """Four 503s exhaust the budget: StorageUnavailable, and no object is visible."""
    storage = make_gcs_storage(emulator_host=proxy.url)
    proxy.fail_next(BUDGET + 1, 503, match="uploadType=multipart")
    with pytest.raises(StorageUnavailable, match="HTTP 503"):
        storage.put_object("k", b"value")
    assert proxy.faults == BUDGET + 1
    assert not storage.exists("k")


def test_chunk_failures_resume_from_what_the_server_has(
    make_gcs_storage: Maker, gcs_resume_emulator: str, resume_proxy: FaultProxy
) -> None:
    """A chunk failing three times is resent after asking the server how much it holds;
    the session is kept and the object is byte-exact."""
    proxy = resume_proxy
    storage = on_resume_emulator(make_gcs_storage, gcs_resume_emulator, proxy, chunk_size=MiB)
    second_chunk = f"bytes {MiB}-"
    proxy.fail_next(BUDGET, 503, match=lambda r: content_range(r).startswith(second_chunk))
    storage.put_object("k", gcs_pattern(3 * MiB + 100))
    assert proxy.faults == BUDGET
    assert sum(content_range(r) == "bytes */*" for r in proxy.requests) == BUDGET
    assert sum(r.method == "POST" for r in proxy.requests) == 1  # one session
    assert storage.read_bytes("k") == pattern(3 * MiB + 100)


def test_failed_resumable_upload_leaves_the_old_object(
    make_gcs_storage: Maker, gcs_resume_emulator: str, resume_proxy: FaultProxy
) -> None:
    """Dropped chunk requests beyond the budget raise StorageUnavailable, and readers still
    see the previous version: no partial object ever appears."""
    proxy = resume_proxy
    storage = on_resume_emulator(make_gcs_storage, gcs_resume_emulator, proxy, chunk_size=MiB)
    storage.put_object("k", b"old version")
    proxy.drop_next(BUDGET + 1, match=lambda r: content_range(r).startswith(f"bytes {MiB}-"))
    with pytest.raises(StorageUnavailable):
        storage.put_object("k", gcs_pattern(3 * MiB))
    proxy.clear()
    assert storage.read_bytes("k") == b"old version"
    assert [o.name for o in storage.list_objects()] == ["k"]


def test_failed_first_upload_leaves_no_object(make_gcs_storage: Maker, proxy: FaultProxy) -> None:
    """A resumable upload failing in its first chunk leaves nothing under the name."""
    storage = make_gcs_storage(emulator_host=proxy.url, chunk_size=MiB)
    proxy.fail_next(100, 500, match=r"^PUT ")
    with pytest.raises(StorageUnavailable, match="HTTP 500"):
        storage.put_object("k", gcs_pattern(2 * MiB))
    proxy.clear()
    assert not storage.exists("k")
    assert list(storage.list_objects()) == []


def test_lost_answer_to_the_last_chunk_is_checked_not_resent(
    make_gcs_storage: Maker, proxy: FaultProxy
) -> None:
    """When the answer to the final chunk is lost, the upload checks the stored object's size
    and CRC32C instead of failing or uploading again."""
    storage = make_gcs_storage(emulator_host=proxy.url, chunk_size=MiB)
    proxy.cut_next(
        1, 0, match=lambda r: r.method == "PUT" and content_range(r).endswith("/3145828")
    )
    storage.put_object("k", gcs_pattern(3 * MiB + 100))
    assert proxy.faults == 1
    assert sum(r.method == "POST" for r in proxy.requests) == 1
    assert storage.read_bytes("k") == pattern(3 * MiB + 100)


class _Answer:
    """A canned HTTP answer for :class:`_OneShotSession`."""

    def __init__(self, status: int, headers: dict[str, str], body: dict[str, str]) -> None:
        self.status_code, self._body = status, body
        self.headers = requests.structures.CaseInsensitiveDict(headers)

    def json(self) -> dict[str, str]:
        return self._body

    def close(self) -> None:
        pass


class _OneShotSession:
    """A server that opens a session and then reports the object with a wrong CRC32C."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def request(self, method: str, url: str, **_: object) -> _Answer:
        self.calls.append(method)
        if method == "POST":
            return _Answer(200, {"Location": "http://session"}, {})
        return _Answer(200, {}, {"size": "5", "crc32c": "AAAAAA=="})


def test_upload_arriving_corrupt_is_deleted() -> None:
    """When the stored object's CRC32C differs from what was sent, the object is deleted
    and IntegrityError raised: a corrupt upload is never reported as stored."""
    session, discarded = _OneShotSession(), []
    upload = ResumableUpload(
        session,
        "http://start",
        "gs://b/k",
        FAST_RETRY,
        (1.0, 1.0),
        stat=lambda: (-1, None),
        discard=lambda: discarded.append(True),
    )
    with pytest.raises(IntegrityError):
        upload.run(ChunkWindow(b"12345", io.BytesIO(), CHUNK_UNIT))
    assert session.calls == ["POST", "PUT"]
    assert discarded == [True]


def test_chunk_window_goes_back_within_the_last_chunk() -> None:
    """The stream google-resumable-media reads can go back anywhere in the chunk it last
    handed out (a server that kept part of it), not before; its CRC32C counts each byte
    once however often it is resent."""
    import google_crc32c

    data = bytes(range(256)) * 4096
    window = ChunkWindow(data[:1000], io.BytesIO(data[1000:]), CHUNK_UNIT)
    assert window.read(CHUNK_UNIT) == data[:CHUNK_UNIT]
    window.seek(1000)
    again = window.read(CHUNK_UNIT)
    assert again == data[1000 : 1000 + CHUNK_UNIT]
    with pytest.raises(StorageError):
        window.seek(999)
    rest = b"".join(iter(lambda: window.read(CHUNK_UNIT), b""))
    assert again + rest == data[1000:]
    assert window.ended and window.total == len(data)
    crc = base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")
    assert window.crc32c() == crc


def test_cut_download_resumes_where_it_stopped(make_gcs_storage: Maker, proxy: FaultProxy) -> None:
    """A download cut mid-body is reopened with a Range from the bytes already delivered."""
    storage = make_gcs_storage(emulator_host=proxy.url)
    data = pattern(3 * MiB)
    storage.put_object("k", data)
    proxy.clear()
    proxy.cut_next(2, 1_000_000, match=r"^GET /download/")
    assert storage.read_bytes("k") == data
    ranges = [r.headers.get("range") for r in proxy.requests]
    assert ranges == [None, "bytes=1000000-", "bytes=2000000-"]


def test_metadata_calls_retry_then_surface_unavailable(
    make_gcs_storage: Maker, proxy: FaultProxy
) -> None:
    """stat, list and delete retry 503s within the budget and raise StorageUnavailable beyond."""
    storage = make_gcs_storage(emulator_host=proxy.url)
    storage.put_object("k", b"v")
    proxy.fail_next(BUDGET, 503, match=r"^GET /storage/v1/b/[^/]+/o/")
    assert storage.stat_object("k").size == 1
    proxy.fail_next(BUDGET, 429, match=r"^GET /storage/v1/b/[^/]+/o\?")
    assert [o.name for o in storage.list_objects()] == ["k"]
    proxy.fail_next(BUDGET + 1, 503, match=r"^POST /batch/")
    with pytest.raises(StorageUnavailable):
        storage.delete_objects(["k"])
    assert storage.exists("k")


def test_forbidden_is_permission_denied_and_not_retried(
    make_gcs_storage: Maker, proxy: FaultProxy
) -> None:
    """A 403 raises PermissionDenied with a credentials hint after one request."""
    storage = make_gcs_storage(emulator_host=proxy.url)
    proxy.fail_next(5, 403)
    with pytest.raises(PermissionDenied) as info:
        storage.stat_object("k")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in info.value.hint
    assert proxy.count == 1


def test_a_silent_server_times_out(make_gcs_storage: Maker) -> None:
    """A server that accepts but never answers gives StorageUnavailable after the timeouts,
    never a hang."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        storage = make_gcs_storage(
            emulator_host=f"127.0.0.1:{port}",
            create=False,
            timeout=(0.5, 0.5),
            retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.01),
        )
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            storage.read_bytes("k")
    assert time.monotonic() - started < 10


# -- configuration and the bucket ---------------------------------------------------------


def test_missing_bucket_names_the_prefix_variable(make_gcs_storage: Maker) -> None:
    """Every operation on a missing bucket raises StorageError naming WALG_GS_PREFIX, and a
    read is never mistaken for a missing object (wal-fetch would exit 74)."""
    storage = make_gcs_storage(create=False)
    operations: list[Callable[[], object]] = [
        lambda: storage.put_object("k", b"small"),
        lambda: storage.put_object("k", pattern(300 << 10)),
        lambda: storage.read_bytes("k"),
        lambda: storage.stat_object("k"),
        lambda: storage.exists("k"),
        lambda: list(storage.list_objects()),
        lambda: storage.delete_objects(["k"]),
    ]
    for operation in operations:
        with pytest.raises(StorageError) as info:
            operation()
        assert not isinstance(info.value, ObjectNotFound)
        assert "does not exist" in info.value.msg
        assert "WALG_GS_PREFIX" in info.value.hint


def test_opened_from_the_environment(gcs_emulator: str, make_gcs_storage: Maker) -> None:
    """WALE_GS_PREFIX and STORAGE_EMULATOR_HOST open gs://bucket/path as the CLI does, and the
    missing-bucket hint names the variable the prefix came from."""
    bucket = make_gcs_storage().options.bucket
    environ = {"WALE_GS_PREFIX": f"gs://{bucket}/a/b/", "STORAGE_EMULATOR_HOST": gcs_emulator}
    storage = open_storage(load(environ))
    assert isinstance(storage, GcsStorage)
    storage.put_object("k", b"v")
    assert storage.url == f"gs://{bucket}/a/b/"
    assert stored_names(gcs_emulator, bucket) == ["a/b/k"]
    environ["WALE_GS_PREFIX"] = "gs://no-such-bucket"
    with pytest.raises(StorageError) as info:
        open_storage(load(environ)).stat_object("k")
    assert "WALE_GS_PREFIX" in info.value.hint


def test_unreadable_credentials_file_is_a_config_error(tmp_path: object) -> None:
    """A GOOGLE_APPLICATION_CREDENTIALS file that cannot be loaded is a ConfigError naming it,
    raised when the storage is first used."""
    storage = GcsStorage(GcsOptions("bucket", credentials_file="/nonexistent/key.json"))
    with pytest.raises(ConfigError) as info:
        storage.exists("k")
    assert "/nonexistent/key.json" in info.value.msg
    assert "GOOGLE_APPLICATION_CREDENTIALS" in info.value.msg


def test_google_cloud_storage_is_imported_lazily() -> None:
    """Importing the backend does not import google-cloud-storage (220 ms at start-up)."""
    code = (
        "import sys, walg.storage.gcs; "
        "sys.exit('google.cloud.storage' in sys.modules or 'google.auth' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
