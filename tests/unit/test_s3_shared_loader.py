"""S3 clients of one interpreter share botocore's data loader (issue 15): a forked worker
makes its client from the model its parent already parsed, in milliseconds."""

from __future__ import annotations

import os

from walg.config.settings import S3Settings, Secret
from walg.storage import s3


def options() -> s3.S3Options:
    keys = {"access_key_id": Secret("a"), "secret_access_key": Secret("b")}
    settings = S3Settings(**keys, region="us-east-1", endpoint="http://127.0.0.1:9")
    return s3.S3Options(bucket="b", settings=settings)


def test_clients_share_one_loader_whose_paths_do_not_grow() -> None:
    """Every client's session uses the interpreter's one loader; making more clients does
    not lengthen its search path (boto3 appends its data folder per session)."""
    first = s3.make_client(options())
    paths = list(s3._shared_loader().search_paths)
    second = s3.make_client(options())
    assert first is not second
    assert s3._shared_loader().search_paths == paths
    assert len(paths) == len(set(paths))
    assert first._loader is second._loader is s3._shared_loader()


def test_a_forked_child_makes_its_own_client_on_the_inherited_loader() -> None:
    """A forked process gets a new client (its own connections) on the loader it
    inherited, already holding the S3 model."""
    parent = s3._Client(options())
    made = parent.get()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        child = parent.get()
        ok = child is not made and child._loader is made._loader
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
