"""Which region an S3 client signs for, found without a round trip where possible.

AWS_REGION wins. With AWS_ENDPOINT the region is the one an AWS host name carries
(``s3.eu-west-1.amazonaws.com``), else us-east-1, which is what S3-compatible services
(MinIO, Ceph...) expect and what WAL-G uses for them: no lookup. With neither, S3 is asked
once (GetBucketLocation) by the caller's probe client; if it cannot say, us-east-1, and
botocore follows S3's redirect to the bucket's region. A storage that cannot be reached
then fails the operation itself, within its retry budget, instead of in a lookup before it.
"""

from __future__ import annotations

import re
from typing import Any

from walg.config.settings import S3Settings
from walg.logs import get_logger
from walg.storage.s3_errors import Where, translate

__all__ = ["DEFAULT_REGION", "ask_region", "endpoint_url", "known_region"]

DEFAULT_REGION = "us-east-1"
_AWS_HOST_REGION = re.compile(r"(?:^|\.)s3[.-](?:fips\.|dualstack\.)*([a-z]{2}(?:-[a-z]+)+-\d+)\.")
_log = get_logger("walg.storage")


def endpoint_url(endpoint: str | None) -> str | None:
    """AWS_ENDPOINT as botocore takes it: https:// unless it names a scheme; None if unset."""
    if endpoint and "://" not in endpoint:
        return "https://" + endpoint
    return endpoint or None


def known_region(s3: S3Settings) -> str:
    """The region without asking S3 (see the module docstring); "" when S3 must be asked."""
    if s3.region:
        return s3.region
    endpoint = endpoint_url(s3.endpoint)
    if not endpoint:
        return ""
    from urllib.parse import urlsplit

    found = _AWS_HOST_REGION.search(urlsplit(endpoint).hostname or "")
    return found.group(1) if found else DEFAULT_REGION


def ask_region(probe: Any, bucket: str, variable: str) -> str:
    """The bucket's region by one GetBucketLocation through ``probe`` (a client for
    us-east-1 whose botocore retries are off); us-east-1 when S3 does not say."""
    try:
        answer = probe.get_bucket_location(Bucket=bucket)
    except Exception as err:
        error = translate(err, "region lookup", "", Where(bucket, variable))
        _log.debug("bucket region not found; using us-east-1", error=error.msg)
        return DEFAULT_REGION
    location = answer.get("LocationConstraint") or DEFAULT_REGION
    return "eu-west-1" if location == "EU" else str(location)
