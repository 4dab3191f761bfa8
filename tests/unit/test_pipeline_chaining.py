"""Stage chaining: stages joined one-to-one share their workers' processes, and every
failure semantic of the runtime holds inside a chain (the right exception naming the right
stage, every stage closed, no hang, nothing partial stored); CPU is reported per stage."""

from __future__ import annotations

import functools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pipeline_stages as ps
import pytest

from walg.config import load
from walg.errors import WorkerDied
from walg.format.scan import Entry, Part
from walg.pipeline import Graph, InlineRuntime, ProcessRuntime, StageSpec
from walg.pipeline.plan import describe, plan_chains
from walg.stages.chunks import by_part
from walg.stages.codecs import Compress
from walg.stages.tar_writer import TarWriter
from walg.stages.transform import PartTransform
from walg.stages.upload import Uploader

P = functools.partial


def spec(name: str, factory: Any, workers: int = 1, key: Any = None) -> StageSpec:
    return StageSpec(name, factory, workers=workers, queue_bound=2, key=key)


# -- the plan ------------------------------------------------------------------------------


def test_one_to_one_stages_of_equal_width_form_a_chain() -> None:
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 10)),
        spec("a", ps.Total, workers=2),
        spec("b", ps.Total, workers=2),
        spec("c", ps.Total, workers=2),
        spec("sink", ps.Total),
    )
    assert plan_chains(graph) == (("src",), ("a", "b", "c"), ("sink",))
    assert plan_chains(graph, enabled=False) == (("src",), ("a",), ("b",), ("c",), ("sink",))
    assert describe(graph, plan_chains(graph)) == "src x1 -> [a | b | c] x2 -> sink x1"
    assert ProcessRuntime(chaining=False).describe(graph) == (
        "src x1 -> a x2 -> b x2 -> c x2 -> sink x1"
    )


def test_fan_out_and_fan_in_keep_their_channels() -> None:
    stages = (
        spec("src", P(ps.Numbers, 10)),
        spec("x", ps.Total),
        spec("y", ps.Total),
        spec("join", ps.Total),
        spec("after", ps.Total),
    )
    edges = (("src", "x"), ("src", "y"), ("x", "join"), ("y", "join"), ("join", "after"))
    graph = Graph(stages, edges)
    assert plan_chains(graph) == (("src",), ("x",), ("y",), ("join", "after"))
    line = describe(graph, plan_chains(graph))
    assert "src x1 -> x x1" in line and "y x1 -> [join | after] x1" in line


def test_the_backup_graph_is_one_chain_per_part_in_flight() -> None:
    from walg.backup.graphs import push_graph
    from walg.config.widths import PushWidths

    settings = load({"WALG_FILE_PREFIX": "/nonexistent"})
    graph = push_graph(settings, "f/", [], PushWidths(3, 1, 1))
    assert ProcessRuntime().describe(graph) == "parts x1 -> [tar | compress | upload] x3"


def test_the_backup_graph_hands_out_the_largest_parts_first() -> None:
    from walg.backup.graphs import largest_first

    def part(number: int, *sizes: int) -> Part:
        entries = tuple(Entry(f"f{number}.{i}", "/x", "file", size) for i, size in enumerate(sizes))
        return Part(number, (Entry("base", "/x", "dir"), *entries))

    parts = [part(1, 10, 10), part(2, 900), part(3, 5), part(4, 300, 300)]
    assert [p.number for p in largest_first(parts)] == [2, 4, 1, 3]


# -- results -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
def test_chained_unchained_and_inline_runs_agree(workers: int) -> None:
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 400), workers=workers),
        spec("rep", P(ps.Repeat, 3), workers=workers),
        spec("aff", P(ps.Affine, 2, 1), workers=workers, key=ps.modulo_key),
        spec("rep2", P(ps.Repeat, 2), workers=workers),
    )
    runs = [
        ProcessRuntime().run(graph).outputs["rep2"],
        ProcessRuntime(chaining=False).run(graph).outputs["rep2"],
        InlineRuntime().run(graph).outputs["rep2"],
    ]
    assert Counter(runs[0]) == Counter(runs[1]) == Counter(runs[2])
    assert len(runs[0]) == sum((i % 3) * ((2 * i + 1) % 2) for i in range(400))


def test_flush_output_goes_through_the_rest_of_the_chain() -> None:
    """A stage that emits only at flush (Total) still feeds the stages after it."""
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 100)),
        spec("sum", ps.Total),
        spec("aff", P(ps.Affine, 10, 1)),
        spec("rep", P(ps.Repeat, 2)),
    )
    assert plan_chains(graph) == (("src", "sum", "aff", "rep"),)
    assert ProcessRuntime().run(graph).outputs == {"rep": [10 * 4950 + 1]}


def test_cpu_is_attributed_to_the_stage_that_spent_it() -> None:
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 4), workers=2),
        spec("spin", P(ps.Spin, 0.05), workers=2),
        spec("pass", P(ps.Affine, 1, 0), workers=2),
    )
    for runtime in (ProcessRuntime(), ProcessRuntime(chaining=False)):
        cpu = runtime.run(graph).cpu
        assert {"src", "spin", "pass"} <= set(cpu)
        assert cpu["spin"] >= 0.15  # 4 items x 0.05 s, summed over both workers
        assert cpu["pass"] < 0.1 and cpu["src"] < 0.1
        assert any(key.startswith("other[") for key in cpu)


# -- failures inside a chain -------------------------------------------------------------------


def test_a_failing_stage_in_a_chain_is_named_and_every_stage_is_closed(tmp_path: Path) -> None:
    folder = str(tmp_path)
    graph = Graph.chain(
        spec("src", P(ps.TrackedForever, folder), workers=2),
        spec("a", P(ps.Tracked, folder), workers=2),
        spec("fail", P(ps.FailAfter, 30), workers=2),
        spec("b", P(ps.Tracked, folder), workers=2),
    )
    runtime = ProcessRuntime(grace=5)
    assert runtime.describe(graph) == "[src | a | fail | b] x2"
    started = time.monotonic()
    with pytest.raises(ps.Boom, match="boom at item 30") as info:
        runtime.run(graph)
    assert time.monotonic() - started < 20
    assert any("stage 'fail' worker" in note for note in info.value.__notes__)
    closed = sorted(p.name for p in tmp_path.glob("*.closed"))
    assert closed == [f"{s}-{i}.closed" for s in ("a", "b", "src") for i in (0, 1)]


def test_a_killed_chain_worker_is_reported_with_its_stages(tmp_path: Path) -> None:
    folder = str(tmp_path)
    graph = Graph.chain(
        spec("src", P(ps.TrackedForever, folder)),
        spec("a", P(ps.Tracked, folder), workers=2),
        spec("victim", P(ps.KillSelf, 10), workers=2),
    )
    with pytest.raises(WorkerDied, match=r"stages 'a\|victim' worker \d died .*SIGKILL"):
        ProcessRuntime().run(graph)
    assert (tmp_path / "src-0.closed").exists()


def test_an_open_failure_mid_chain_closes_what_was_built(tmp_path: Path) -> None:
    folder = str(tmp_path)
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 10)),
        spec("a", P(ps.Tracked, folder)),
        spec("db", P(ps.FailOpen, folder)),
        spec("b", P(ps.Tracked, folder)),
    )
    with pytest.raises(RuntimeError, match="cannot connect") as info:
        ProcessRuntime().run(graph)
    assert any("stage 'db' worker 0" in note for note in info.value.__notes__)
    assert (tmp_path / "a-0.closed").exists() and (tmp_path / "failopen.closed").exists()
    assert not (tmp_path / "b-0.open").exists()  # never built: the chain stopped at db


def test_a_close_failure_is_reported_once_every_stage_closed(tmp_path: Path) -> None:
    folder = str(tmp_path)
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 10)),
        spec("a", P(ps.Tracked, folder)),
        spec("leaky", P(ps.FailClose, folder)),
        spec("b", P(ps.Tracked, folder)),
    )
    with pytest.raises(OSError, match="cannot release the handle") as info:
        ProcessRuntime().run(graph)
    assert any("stage 'leaky' worker 0" in note for note in info.value.__notes__)
    assert sorted(p.name for p in tmp_path.glob("*.closed")) == [
        "a-0.closed", "b-0.closed", "leaky-0.closed"
    ]


# -- the backup stages in a chain: nothing partial is stored ---------------------------------


def _parts(tmp_path: Path) -> list[Part]:
    data = tmp_path / "data"
    data.mkdir()
    parts = []
    for number in (1, 2):
        path = data / f"file{number}"
        path.write_bytes(bytes(range(256)) * (12 << 12))  # 12 MiB: 12 chunks
        entry = Entry(f"base/1/{number}", str(path), "file", path.stat().st_size, 0.0, 0o600)
        parts.append(Part(number, (entry,)))
    return parts


def _backup_graph(tmp_path: Path, middle: StageSpec) -> tuple[Graph, Path]:
    storage = tmp_path / "storage"
    storage.mkdir()
    settings = load({"WALG_FILE_PREFIX": str(storage)})
    keyed = functools.partial(StageSpec, workers=2, queue_bound=2, key=by_part)
    graph = Graph.chain(
        StageSpec("parts", P(ps.Items, _parts(tmp_path))),
        StageSpec("tar", P(TarWriter, "lz4"), workers=2, queue_bound=2),
        keyed("compress", P(PartTransform, Compress("lz4"))),
        middle,
        keyed("upload", P(Uploader, settings, "basebackups_005/b/tar_partitions/")),
    )
    assert ProcessRuntime().describe(graph) == (
        f"parts x1 -> [tar | compress | {middle.name} | upload] x2"
    )
    return graph, storage


def _stored(storage: Path) -> list[str]:
    return sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())


def test_the_backup_chain_stores_every_part(tmp_path: Path) -> None:
    middle = StageSpec("pass", P(ps.Tracked, str(tmp_path)), workers=2, key=by_part)
    graph, storage = _backup_graph(tmp_path, middle)
    done = ProcessRuntime().run(graph).outputs["upload"]
    assert sorted(d.part for d in done) == [1, 2]
    assert _stored(storage) == [
        "basebackups_005/b/tar_partitions/part_001.tar.lz4",
        "basebackups_005/b/tar_partitions/part_002.tar.lz4",
    ]


def test_a_stage_failing_mid_part_in_the_chain_stores_nothing(tmp_path: Path) -> None:
    graph, storage = _backup_graph(
        tmp_path, StageSpec("fail", P(ps.FailAfter, 5), workers=2, key=by_part)
    )
    with pytest.raises(ps.Boom):
        ProcessRuntime().run(graph)
    assert _stored(storage) == []  # no object, and no temporary file left behind


def test_a_chain_worker_killed_mid_part_commits_no_object(tmp_path: Path) -> None:
    graph, storage = _backup_graph(
        tmp_path, StageSpec("victim", P(ps.KillSelf, 5), workers=2, key=by_part)
    )
    with pytest.raises(WorkerDied, match="SIGKILL"):
        ProcessRuntime().run(graph)
    committed = [name for name in _stored(storage) if name.endswith(".tar.lz4")]
    assert committed == []  # a killed writer may leave only its temporary file
