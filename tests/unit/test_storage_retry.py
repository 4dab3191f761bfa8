"""How long a storage call retries: the budget for an unreachable storage, the count for
answers of the service, no multiplied retries in nested loops, and warnings a DBA reads."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from walg import config
from walg.errors import StorageUnavailable, StorageUnreachable
from walg.storage import RetryPolicy, open_storage
from walg.storage.retry import DEFAULT_BUDGET


class FakeTime:
    """A clock that moves only when the policy sleeps, or when an attempt takes time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def policy(time: FakeTime, retries: int = 15, budget: float = 10.0) -> RetryPolicy:
    return RetryPolicy(max_retries=retries, budget=budget, sleep=time.sleep, clock=time.clock)


def refused() -> StorageUnreachable:
    return StorageUnreachable("S3 at http://127.0.0.1:9/ refused the connection (list of s3://b/)")


def always(error: type[Exception] | None, time: FakeTime, cost: float = 0.0):  # type: ignore[no-untyped-def]
    """An operation that fails every time, each attempt taking ``cost`` seconds."""
    calls: list[float] = []

    def operation() -> None:
        calls.append(time.now)
        time.now += cost
        raise refused() if error is None else error("503 Slow Down")

    return operation, calls


def test_unreachable_storage_is_retried_within_the_budget() -> None:
    """A refused connection is retried until the budget is spent, not max_retries times,
    and the last try still starts inside the budget."""
    time = FakeTime()
    operation, calls = always(None, time)
    with pytest.raises(StorageUnreachable) as caught:
        policy(time, retries=1000).call("list", operation)
    assert time.now <= 10.0
    assert calls[-1] <= 10.0
    assert 3 <= len(calls) < 1000
    assert f"gave up after {len(calls)} tries in" in caught.value.msg
    assert "(WALG_STORAGE_RETRY_BUDGET=10s)" in caught.value.msg
    assert caught.value.exhausted  # type: ignore[attr-defined]


def test_connection_timeouts_count_against_the_budget() -> None:
    """Attempts that each take a connect timeout of 4 s: 3 tries start within 10 s."""
    time = FakeTime()
    operation, calls = always(None, time, cost=4.0)
    with pytest.raises(StorageUnreachable):
        policy(time).call("put", operation)
    assert len(calls) == 3
    assert calls[-1] < 10.0


def test_answers_of_the_service_keep_the_whole_count() -> None:
    """A service that answers 503 is retried max_retries times, however long it takes: it
    is there, and a long backup rides out its overload."""
    time = FakeTime()
    operation, calls = always(StorageUnavailable, time, cost=3.0)
    with pytest.raises(StorageUnavailable) as caught:
        policy(time, retries=6).call("put", operation)
    assert len(calls) == 7
    assert time.now > 10.0
    assert "gave up after 7 tries" in caught.value.msg
    assert "WALG_STORAGE_RETRY_BUDGET" not in caught.value.msg


def test_no_budget_means_the_count_alone() -> None:
    """WALG_STORAGE_RETRY_BUDGET=0: an unreachable storage is retried max_retries times."""
    time = FakeTime()
    operation, calls = always(None, time, cost=5.0)
    with pytest.raises(StorageUnreachable):
        policy(time, retries=4, budget=0).call("put", operation)
    assert len(calls) == 5


def test_nested_retry_loops_do_not_multiply() -> None:
    """An error an inner loop gave up on is raised at once by the loop around it."""
    time = FakeTime()
    inner, calls = always(None, time)
    retry = policy(time, retries=3, budget=0)
    with pytest.raises(StorageUnreachable):
        retry.call("put", lambda: retry.call("upload", inner))
    assert len(calls) == 4


def test_a_retry_that_succeeds_is_a_success() -> None:
    """The storage answering within the budget ends the call normally."""
    time = FakeTime()
    answers = iter([refused(), refused(), "listed"])

    def operation() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert policy(time).call("list", operation) == "listed"


def test_retry_warnings_are_worded_for_a_dba() -> None:
    """Each retry logs the error itself and which try comes next: 'S3 at http://... refused
    the connection ...; retrying (2/4)'."""
    time = FakeTime()
    operation, _ = always(None, time)
    with capture_logs() as logs, pytest.raises(StorageUnreachable):
        policy(time, retries=3).call("list", operation)
    events = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
    assert events == [
        f"S3 at http://127.0.0.1:9/ refused the connection (list of s3://b/); retrying ({n}/4)"
        for n in (2, 3, 4)
    ]


def test_connect_timeout_stays_within_the_budget() -> None:
    """A connection attempt never waits longer than the whole budget."""
    assert RetryPolicy(budget=3).connect_timeout(10) == 3
    assert RetryPolicy(budget=30).timeouts((10, 60)) == (10, 60)
    assert RetryPolicy(budget=0).connect_timeout(10) == 10


def test_the_budget_is_a_setting() -> None:
    """WALG_STORAGE_RETRY_BUDGET (Go duration, default 10s) reaches the storage's policy."""
    assert config.load({}).storage_retry_budget == DEFAULT_BUDGET == 10.0
    env = {"WALG_STORAGE_RETRY_BUDGET": "2500ms", "STORAGE_EMULATOR_HOST": "127.0.0.1:1"}
    gcs = open_storage(config.load({**env, "WALG_GS_PREFIX": "gs://b/p"}))
    assert gcs.retry.budget == 2.5
    s3 = open_storage(config.load({**env, "WALG_S3_PREFIX": "s3://b/p", "AWS_REGION": "x"}))
    assert (s3.retry.budget, s3.retry.max_retries) == (2.5, 15)
    assert s3.options.connect_timeout == 2.5  # type: ignore[attr-defined]


# --- what the errors say ------------------------------------------------------------------


def test_s3_connection_errors_name_the_endpoint() -> None:
    """botocore's connect-time failures become StorageUnreachable naming where S3 was
    looked for; an op ending in 'of' gets no second one."""
    from botocore import exceptions as bce

    from walg.storage.s3_errors import Where, translate

    where = Where("b", "WALG_S3_PREFIX")
    url = "http://127.0.0.1:9/b?location"
    refused = bce.EndpointConnectionError(
        endpoint_url=url, error=ConnectionRefusedError("[Errno 111] Connection refused")
    )
    error = translate(refused, "region lookup", "", where)
    assert isinstance(error, StorageUnreachable)
    assert error.msg == (
        "S3 at http://127.0.0.1:9/ refused the connection (region lookup of s3://b/)"
    )
    timeout = translate(bce.ConnectTimeoutError(endpoint_url=url), "list", "p/", where)
    assert isinstance(timeout, StorageUnreachable)
    assert "did not accept the connection in time" in timeout.msg
    read = translate(bce.ReadTimeoutError(endpoint_url=url), "read", "k", where)
    assert type(read) is StorageUnavailable  # the service is there: the whole count
    denied = {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
    answered = translate(
        bce.ClientError(denied, "ListObjectVersions"), "list versions of", "p/", where
    )
    assert "of of" not in answered.msg
    assert "list versions of s3://b/p/" in answered.msg


def test_gcs_connection_errors_name_the_endpoint_only() -> None:
    """requests' connect failures become StorageUnreachable naming the origin alone (an
    upload session's URL is a credential)."""
    import requests

    from walg.storage.gcs_http import translate

    request = requests.Request("PUT", "http://127.0.0.1:9/upload?upload_id=SECRET").prepare()
    cause = "Failed to establish a new connection: [Errno 111] Connection refused"
    error = translate(requests.ConnectionError(cause, request=request), "upload", "gs://b/k")
    assert isinstance(error, StorageUnreachable)
    assert error.msg == "GCS at http://127.0.0.1:9/ refused the connection (cannot upload gs://b/k)"
    assert "SECRET" not in error.msg
    cut = translate(requests.ConnectionError("Connection aborted.", request=request), "read", "x")
    assert type(cut) is StorageUnavailable


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({"AWS_REGION": "ap-south-1", "AWS_ENDPOINT": "http://127.0.0.1:9000"}, "ap-south-1"),
        ({"AWS_ENDPOINT": "http://127.0.0.1:9000"}, "us-east-1"),
        ({"AWS_ENDPOINT": "https://s3.eu-west-1.amazonaws.com"}, "eu-west-1"),
        ({"AWS_ENDPOINT": "s3-us-west-2.amazonaws.com"}, "us-west-2"),
        ({"AWS_ENDPOINT": "https://s3.amazonaws.com"}, "us-east-1"),
        ({}, ""),
    ],
)
def test_region_is_known_without_asking_s3(env: dict[str, str], region: str) -> None:
    """AWS_REGION or AWS_ENDPOINT settle the region without a lookup; "" means ask once."""
    from walg.storage.s3_region import known_region

    assert known_region(config.load(env).s3) == region
