"""Upload and download throughput of each storage backend.

A 256 MiB object (bytes made on the fly; storage does not compress) is put and read back through the
Storage interface on: file storage (a temp dir), S3 on a local moto server, and GCS on the
local fake-gcs-server (Go), started here as the tests start them. Each backend runs with
one stream (WALG_UPLOAD_CONCURRENCY=1) and with WALG_UPLOAD_CONCURRENCY=4 (S3: four
multipart parts in flight; file and GCS, which upload an object as one stream: four
objects of 64 MiB at once). Prints MB/s; the servers are local emulators, so their
figures bound what this machine's emulators take, not what S3 or GCS would.

    .venv/bin/python bench/storage_throughput.py [--mib 256] [--only file s3 gcs]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.streams import PatternStream

from walg.config.settings import S3Settings, Secret
from walg.storage import RetryPolicy, Storage
from walg.storage.file import FileStorage

MIB = 1 << 20


@contextmanager
def file_backend(concurrency: int) -> Iterator[Storage]:
    folder = tempfile.mkdtemp(prefix="walg-bench-")
    try:
        yield FileStorage(folder)
    finally:
        shutil.rmtree(folder)


@contextmanager
def moto() -> Iterator[str]:
    from servers.s3 import start_moto, stop_moto

    with tempfile.TemporaryDirectory() as tmp:
        process, endpoint = start_moto(Path(tmp) / "moto.log")
        try:
            yield endpoint
        finally:
            stop_moto(process)


@contextmanager
def s3_backend(endpoint: str, concurrency: int) -> Iterator[Storage]:
    from servers.s3 import raw_client

    from walg.storage.s3 import S3Options, S3Storage

    bucket = f"bench-{time.monotonic_ns()}"
    raw_client(endpoint).create_bucket(Bucket=bucket)
    settings = S3Settings(
        access_key_id=Secret("bench"),
        secret_access_key=Secret("bench"),
        region="us-east-1",
        endpoint=endpoint,
        force_path_style=True,
    )
    yield S3Storage(
        S3Options(bucket=bucket, path="bench", settings=settings, concurrency=concurrency),
        RetryPolicy(),
    )


@contextmanager
def gcs() -> Iterator[str]:
    from servers.gcs import running_emulator

    with running_emulator() as endpoint:
        yield endpoint


@contextmanager
def gcs_backend(endpoint: str, concurrency: int) -> Iterator[Storage]:
    from servers.gcs import create_bucket

    from walg.storage.gcs import GcsOptions, GcsStorage

    bucket = f"bench-{time.monotonic_ns()}"
    create_bucket(endpoint, bucket)
    yield GcsStorage(GcsOptions(bucket=bucket, emulator_host=endpoint), "bench", RetryPolicy())


def measure(storage: Storage, size: int, concurrency: int) -> tuple[float, float]:
    """(upload MB/s, download MB/s) for ``size`` bytes in ``concurrency`` streams."""
    # S3 parallelizes inside one object (multipart parts); the others by object.
    streams = 1 if type(storage).__name__ == "S3Storage" else concurrency
    each = size // streams
    keys = [f"object-{i}" for i in range(streams)]

    def put(key: str) -> None:
        storage.put_object(key, PatternStream(each))

    def get(key: str) -> int:
        digest, total = hashlib.md5(usedforsecurity=False), 0
        with storage.read_object(key) as stream:
            while chunk := stream.read(MIB):
                total += len(chunk)
                digest.update(chunk[:16])
        return total

    up = timed(lambda: run_all(put, keys, streams))
    down_bytes: list[int] = []
    down = timed(lambda: down_bytes.extend(run_all(get, keys, streams)))
    assert sum(down_bytes) == each * streams
    storage.delete_objects(keys)
    return each * streams / up / 1e6, each * streams / down / 1e6


def run_all(function: Callable[[str], object], keys: list[str], workers: int) -> list[object]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, keys))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--only", nargs="+", default=["file", "s3", "gcs"])
    args = parser.parse_args()
    size = args.mib * MIB
    print(f"{args.mib} MiB per run; MB/s (10^6 bytes per second)")
    print(f"{'backend':<8} {'streams':>7} {'upload':>9} {'download':>9}")
    for name in args.only:
        for concurrency in (1, 4):
            if name == "file":
                with file_backend(concurrency) as storage:
                    up, down = measure(storage, size, concurrency)
            elif name == "s3":
                with moto() as endpoint, s3_backend(endpoint, concurrency) as storage:
                    up, down = measure(storage, size, concurrency)
            else:
                with gcs() as endpoint, gcs_backend(endpoint, concurrency) as storage:
                    up, down = measure(storage, size, concurrency)
            print(f"{name:<8} {concurrency:>7} {up:9.1f} {down:9.1f}", flush=True)


if __name__ == "__main__":
    main()
