"""What stages report, and what they are given, is typed: a mistyped or missing field fails
at once, and the graphs' factories carry the data the stages need (issue 14)."""

from __future__ import annotations

import dataclasses
import functools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from walg.config import Settings, load
from walg.config.widths import push_widths
from walg.errors import GraphInvalid, IntegrityError, PipelineError
from walg.format.chain import Selection
from walg.format.meta import FileDescription, FilesMetadata
from walg.format.scan import Part, scan
from walg.pipeline import Graph, InlineRuntime, StageSpec, WorkerContext
from walg.stages.chunks import Chunk, ExtractedPart, PartDone, StoredFile, TarPartReport
from walg.stages.download import ObjectRef
from walg.stages.throttle import Throttles
from walg.stages.upload import Uploader
from walg.storage import open_storage

FOLDER = "basebackups_005/base_000000010000000000000002/tar_partitions/"


class Counter:
    """A stand-in for a rate limiter and a semaphore: counts bytes taken and entries."""

    def __init__(self) -> None:
        self.taken = 0
        self.entered = 0

    def take(self, nbytes: int) -> None:
        self.taken += nbytes

    def __enter__(self) -> None:
        self.entered += 1

    def __exit__(self, *exc: object) -> None:
        pass


def settings(tmp_path: Path) -> Settings:
    return load({"WALG_FILE_PREFIX": str(tmp_path / "store"), "WALG_COMPRESSION_METHOD": "lz4"})


def pgdata(tmp_path: Path) -> Path:
    root = tmp_path / "pgdata"
    (root / "base" / "1").mkdir(parents=True)
    (root / "base" / "1" / "1259").write_bytes(b"r" * 20_000)
    (root / "PG_VERSION").write_bytes(b"15\n")
    return root


def push(tmp_path: Path, throttles: Throttles | None = None) -> PartDone:
    from walg.backup.graphs import push_graph

    conf = settings(tmp_path)
    part = Part(1, tuple(scan(str(pgdata(tmp_path)))))
    graph = push_graph(conf, FOLDER, [part], push_widths(conf.concurrency, 1, 1))
    shared = throttles.shared() if throttles is not None else None
    [done] = InlineRuntime().run(graph, shared=shared).outputs["upload"]
    assert isinstance(done, PartDone)
    return done


def fetch(tmp_path: Path, done: PartDone, **extract: Any) -> ExtractedPart:
    from walg.backup.graphs import fetch_graph

    ref = ObjectRef(1, FOLDER + done.name, done.name)
    graph = fetch_graph(
        settings(tmp_path), [ref], "lz4", False, str(tmp_path / "restore"), {}, 1, **extract
    )
    [extracted] = InlineRuntime().run(graph).outputs["extract"]
    assert isinstance(extracted, ExtractedPart)
    return extracted


def described(report: TarPartReport, **change: Any) -> FilesMetadata:
    """The files metadata push would write for ``report``, with fields of every file changed."""
    return FilesMetadata(
        {
            name: dataclasses.replace(
                FileDescription(
                    datetime.fromtimestamp(f.mtime, UTC), size=f.size, crc32c=f.crc32c
                ),
                **change,
            )
            for name, f in report.files.items()
        }
    )


def test_a_stored_part_reports_typed_files_and_obeys_the_throttles(tmp_path: Path) -> None:
    """The uploader's PartDone carries the tar composer's report; disk reads and uploads
    went through the run's throttles (handed to the workers as one typed shared object)."""
    readers, disk, network = Counter(), Counter(), Counter()
    done = push(tmp_path, Throttles(readers, disk, network))
    assert set(done.report.files) == {"/base/1/1259", "/PG_VERSION"}
    stored = done.report.files["/base/1/1259"]
    assert isinstance(stored, StoredFile)
    assert (stored.size, stored.incremented, stored.corrupt_blocks) == (20_000, False, ())
    assert done.report.tar_size % 512 == 0 and done.report.tar_size > 20_003
    assert disk.taken >= 20_003 and readers.entered >= 2
    assert network.taken == done.stored_bytes > 0


def test_fetch_graph_hands_files_metadata_and_selection_to_the_extractor(
    tmp_path: Path,
) -> None:
    """The extractor checks what the factory gave it: a wrong checksum fails, a selection
    restores only its members, and the extracted part names what it wrote."""
    done = push(tmp_path)
    wanted = Selection("b", whole=frozenset({"base/1/1259"}))
    extracted = fetch(tmp_path, done, files=described(done.report), select=wanted)
    assert "base/1/1259" in extracted.files and "PG_VERSION" not in extracted.files
    assert (tmp_path / "restore" / "base" / "1" / "1259").read_bytes() == b"r" * 20_000
    assert not (tmp_path / "restore" / "PG_VERSION").exists()
    (tmp_path / "restore").rename(tmp_path / "first")
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        fetch(tmp_path, done, files=described(done.report, crc32c="00000000"))


def test_a_misspelt_or_missing_report_field_fails_at_once() -> None:
    """Reports are frozen dataclasses: an unknown or missing field is a TypeError, and a
    field cannot be set after the fact (it used to be a dict key, silently ignored)."""
    with pytest.raises(TypeError, match="corupt_blocks"):
        StoredFile(1, 0.0, "abcd", corupt_blocks=(1,))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TarPartReport({})  # type: ignore[call-arg]
    report = TarPartReport({"/a": StoredFile(1, 0.0, "abcd")}, 1024)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.tar_size = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        _ = report.files["/a"].incremnted  # type: ignore[attr-defined]


def test_the_last_chunk_without_a_report_fails_the_upload(tmp_path: Path) -> None:
    """An object whose producer reported nothing is not stored: the backup could not
    describe it, so the uploader fails and its upload is aborted."""
    conf = settings(tmp_path)
    stage = Uploader(conf, FOLDER)
    stage.open(WorkerContext("upload", 0, 1, lambda *a: None, time.monotonic))
    try:
        list(stage.process(Chunk(1, "part_001.tar.lz4", 0, b"x" * 100)))
        with pytest.raises(PipelineError, match="no tar part report"):
            list(stage.process(Chunk(1, "part_001.tar.lz4", 1, b"y", last=True)))
    finally:
        stage.close()
    assert not open_storage(conf).exists(FOLDER + "part_001.tar.lz4")


def test_throttles_are_read_from_one_typed_shared_object() -> None:
    """No throttles given: no limits; anything else under their key is refused."""
    def ctx(shared: dict[str, Any] | None) -> WorkerContext:
        return WorkerContext("tar", 0, 1, lambda *a: None, time.monotonic, shared=shared)

    assert Throttles.of(ctx(None)) == Throttles()
    limits = Throttles(network_rate=Counter())
    assert Throttles.of(ctx(limits.shared())) is limits
    with pytest.raises(TypeError, match="dict"):
        Throttles.of(ctx({Throttles.KEY: {"network_rate": Counter()}}))


def test_process_throttles_cannot_ride_in_a_stage_factory() -> None:
    """Why throttles travel in ``shared``: their primitives refuse pickling, and a stage
    factory must pickle (Graph.validate), so a graph carrying them is refused up front."""
    from walg.backup.graphs import Items

    throttles = Throttles.create(readers=2, disk_rate=1 << 20)
    graph = Graph.chain(StageSpec("items", functools.partial(Items, [throttles])))
    with pytest.raises(GraphInvalid, match="cannot be pickled"):
        graph.validate()
