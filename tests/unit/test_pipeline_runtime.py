"""The process runtime: results, fan-in/out, and every failure path ends the run."""

from __future__ import annotations

import functools
import hashlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import pipeline_stages as ps
import pytest

from walg.errors import StageFailed, WorkerDied
from walg.pipeline import Graph, InlineRuntime, ProcessRuntime, RemoteTraceback, StageSpec

P = functools.partial


def spec(
    name: str, factory: Any, workers: int = 1, bound: int = 4, slot: int | None = None
) -> StageSpec:
    if slot is None:
        return StageSpec(name, factory, workers=workers, queue_bound=bound)
    return StageSpec(name, factory, workers=workers, queue_bound=bound, slot_size=slot)


def test_chain_sums_over_many_workers() -> None:
    """Items flow through a chain of multi-worker stages and the sink's flush sees all."""
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 5000), workers=2),
        spec("affine", P(ps.Affine, 3, 1), workers=3, bound=2),
        spec("total", ps.Total),
    )
    result = ProcessRuntime().run(graph)
    assert result.outputs == {"total": [sum(3 * i + 1 for i in range(5000))]}


def test_zero_or_many_outputs_per_input() -> None:
    """A stage may emit 0..n items per input; all of them arrive."""
    graph = Graph.chain(spec("src", P(ps.Numbers, 200)), spec("rep", P(ps.Repeat, 4), workers=2))
    out = ProcessRuntime().run(graph).outputs["rep"]
    expected = [i for i in range(200) for _ in range(i % 4)]
    assert sorted(out) == sorted(expected)


def test_fan_out_and_fan_in() -> None:
    """A stage feeding two stages sends every item to both; a stage fed by two gets both."""
    stages = (
        spec("src", P(ps.Numbers, 100), workers=2),
        spec("double", P(ps.Affine, 2, 0), workers=2),
        spec("neg", P(ps.Affine, -1, 0)),
        spec("total", ps.Total),
    )
    edges = (("src", "double"), ("src", "neg"), ("double", "total"), ("neg", "total"))
    result = ProcessRuntime().run(Graph(stages, edges))
    assert result.outputs == {"total": [sum(range(100))]}


def test_two_sources() -> None:
    """END is counted per upstream worker across several sources."""
    stages = (
        spec("a", P(ps.Numbers, 50), workers=3),
        spec("b", P(ps.Items, [1000, 2000]), workers=2),
        spec("total", ps.Total, workers=2),
    )
    result = ProcessRuntime().run(Graph(stages, (("a", "total"), ("b", "total"))))
    assert sum(result.outputs["total"]) == sum(range(50)) + 3000
    assert len(result.outputs["total"]) == 2


def test_payloads_larger_than_the_ring_arrive_intact() -> None:
    """Items bigger than the whole channel stream through slot by slot, byte-exact."""
    size = 3 * 1024 * 1024 + 17
    graph = Graph.chain(
        spec("src", P(ps.Blobs, 6, size), workers=2),
        spec("digest", ps.Digest, workers=2, bound=2, slot=64 * 1024),
    )
    result = ProcessRuntime().run(graph)
    expected = sorted(
        (hashlib.sha256(b).hexdigest(), len(b)) for b in InlineRuntime().run(Graph.chain(
            spec("src", P(ps.Blobs, 6, size))
        )).outputs["src"]
    )
    assert sorted(result.outputs["digest"]) == expected
    assert result.progress["digest"].bytes == 6 * size
    assert result.progress["digest"].items == 6


def test_exception_keeps_its_type_and_traceback() -> None:
    """A worker's exception reaches the caller as its own type, with the worker traceback."""
    graph = Graph.chain(spec("src", P(ps.Numbers, 100)), spec("fail", P(ps.FailAfter, 5)))
    with pytest.raises(ps.Boom, match="boom at item 5") as info:
        ProcessRuntime().run(graph)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "pipeline_stages.py" in cause.text
    assert "in process" in cause.text
    assert "raise Boom" in cause.text
    assert any("stage 'fail' worker 0" in note for note in info.value.__notes__)


def test_unpicklable_exception_becomes_stage_failed() -> None:
    """An exception that cannot cross processes becomes StageFailed naming its type."""
    graph = Graph.chain(spec("src", P(ps.Numbers, 3)), spec("bad", ps.RaiseUnpicklable))
    with pytest.raises(StageFailed, match="Unpicklable: 1/2"):
        ProcessRuntime().run(graph)


def test_exception_while_others_block_on_full_queues(tmp_path: Path) -> None:
    """An endless source blocked on a full queue is stopped when a later stage raises."""
    graph = Graph.chain(
        spec("src", P(ps.TrackedForever, str(tmp_path)), workers=2),
        spec("slow", P(ps.Slow, 0.01), workers=2, bound=1),
        spec("fail", P(ps.FailAfter, 20, 0.3), bound=1),
    )
    started = time.monotonic()
    with pytest.raises(ps.Boom):
        ProcessRuntime(grace=5).run(graph)
    assert time.monotonic() - started < 20
    assert sorted(p.name for p in tmp_path.glob("*.closed")) == ["src-0.closed", "src-1.closed"]


def test_sigkilled_worker_is_reported(tmp_path: Path) -> None:
    """A worker killed with SIGKILL is detected and reported as WorkerDied."""
    graph = Graph.chain(
        spec("src", P(ps.TrackedForever, str(tmp_path))),
        spec("victim", P(ps.KillSelf, 10), workers=2, bound=1),
    )
    with pytest.raises(WorkerDied, match=r"stage 'victim' worker \d died .*SIGKILL"):
        ProcessRuntime().run(graph)
    assert (tmp_path / "src-0.closed").exists()


def test_worker_exiting_silently_is_reported() -> None:
    """A worker that exits without reporting (os._exit) is WorkerDied with its exit code."""
    graph = Graph.chain(spec("src", P(ps.Numbers, -1)), spec("quitter", P(ps.KillSelf, 3, code=3)))
    with pytest.raises(WorkerDied, match="exited with code 3"):
        ProcessRuntime().run(graph)


def test_close_runs_after_failed_open(tmp_path: Path) -> None:
    """close() runs even when open() raised, and the open error is what the caller gets."""
    graph = Graph.chain(spec("src", P(ps.Numbers, 10)), spec("db", P(ps.FailOpen, str(tmp_path))))
    with pytest.raises(RuntimeError, match="cannot connect"):
        ProcessRuntime().run(graph)
    assert (tmp_path / "failopen.closed").exists()


def test_every_worker_opens_and_closes(tmp_path: Path) -> None:
    """Each worker builds its resources in open() in its own process and releases them."""
    graph = Graph.chain(
        spec("src", P(ps.Numbers, 30)),
        spec("t", P(ps.Tracked, str(tmp_path)), workers=3),
    )
    ProcessRuntime().run(graph)
    pids = {(tmp_path / f"t-{i}.pid").read_text() for i in range(3)}
    assert len(pids) == 3
    assert all((tmp_path / f"t-{i}.closed").exists() for i in range(3))


def test_logs_are_forwarded_to_the_parent() -> None:
    """Worker log events reach the parent with stage and worker bound, filtered by level."""
    events: list[dict[str, Any]] = []
    graph = Graph.chain(spec("src", P(ps.Items, [7, 8])), spec("chatty", ps.Chatty))
    ProcessRuntime(on_log=events.append, log_level=logging.INFO).run(graph)
    saw = sorted((e["item"], e["stage"], e["worker"], e["level"]) for e in events)
    assert saw == [(7, "chatty", 0, "info"), (8, "chatty", 0, "info")]
    assert all(e["obj"].startswith("<object object") for e in events)


def test_progress_callback_sees_totals() -> None:
    """Progress reported by workers is summed per stage and handed to the callback."""
    seen: list[int] = []
    graph = Graph.chain(spec("src", P(ps.Blobs, 20, 1000)), spec("digest", ps.Digest, workers=2))
    result = ProcessRuntime(on_progress=lambda p: seen.append(p["digest"].bytes)).run(graph)
    assert result.progress["digest"].bytes == 20_000
    assert seen and seen[-1] == 20_000


def test_no_worker_left_after_failure(tmp_path: Path) -> None:
    """After a failed run, no worker process of it is still alive."""
    graph = Graph.chain(
        spec("src", P(ps.TrackedForever, str(tmp_path)), workers=2),
        spec("fail", P(ps.FailAfter, 50)),
    )
    with pytest.raises(ps.Boom):
        ProcessRuntime().run(graph)
    for pidfile in tmp_path.glob("*.pid"):
        assert not Path(f"/proc/{pidfile.read_text()}").exists() or _is_zombie(pidfile.read_text())


def _is_zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_sigterm_unused_by_library_callers() -> None:
    """The parent's SIGTERM handler is restored after a run."""
    before = signal.getsignal(signal.SIGTERM)
    ProcessRuntime().run(Graph.chain(spec("src", P(ps.Numbers, 3))))
    assert signal.getsignal(signal.SIGTERM) == before


def test_keyed_stage_keeps_each_key_on_one_worker_in_order() -> None:
    """With a key, every item of a key goes to the same worker, in the order it was emitted."""
    graph = Graph.chain(
        spec("src", P(ps.Pairs, 10, 200)),
        StageSpec("tag", ps.TagWorker, workers=3, queue_bound=2, key=ps.first_of),
    )
    for runtime in (ProcessRuntime(), InlineRuntime()):
        out = runtime.run(graph).outputs["tag"]
        assert len(out) == 2000
        for key in range(10):
            rows = [r for r in out if r[0] == key]
            assert [r[1] for r in rows] == list(range(200))
            assert {r[2] for r in rows} == {key % 3}


def test_shared_objects_reach_every_worker() -> None:
    """Objects passed as shared= (here a process-shared counter) are the same in all workers."""
    import multiprocess

    counter = multiprocess.get_context("fork").Value("i", 0)
    graph = Graph.chain(spec("src", P(ps.Numbers, 300)), spec("count", ps.CountShared, workers=3))
    ProcessRuntime().run(graph, shared={"counter": counter})
    assert counter.value == 300
    InlineRuntime().run(graph, shared={"counter": counter})
    assert counter.value == 600
