"""Both runtimes produce the same multiset of outputs for random graphs and inputs."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import pipeline_stages as ps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walg.pipeline import Graph, InlineRuntime, ProcessRuntime, StageSpec

P = functools.partial


@st.composite
def graphs(draw: Any) -> Graph:
    n_sources = draw(st.integers(1, 2))
    n_inner = draw(st.integers(1, 4))
    stages: list[StageSpec] = []
    edges: list[tuple[str, str]] = []
    for i in range(n_sources):
        if draw(st.booleans()):
            factory: Any = P(ps.Numbers, draw(st.integers(0, 60)))
        else:
            factory = P(ps.Items, draw(st.lists(st.integers(-50, 50), max_size=20)))
        stages.append(StageSpec(f"s{i}", factory, workers=draw(st.integers(1, 3))))
    for i in range(n_inner):
        kind = draw(st.sampled_from(["affine", "repeat", "total"]))
        workers = 1 if kind == "total" else draw(st.integers(1, 3))
        factory = {
            "affine": P(ps.Affine, draw(st.integers(-3, 3)), draw(st.integers(-5, 5))),
            "repeat": P(ps.Repeat, draw(st.integers(1, 3))),
            "total": ps.Total,
        }[kind]
        name = f"n{i}"
        earlier = [s.name for s in stages]
        inputs = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True))
        edges += [(src, name) for src in inputs]
        bound = draw(st.integers(1, 3))
        key = draw(st.sampled_from([None, ps.modulo_key]))
        stages.append(StageSpec(name, factory, workers=workers, queue_bound=bound, key=key))
    return Graph(tuple(stages), tuple(edges))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_process_and_inline_runtimes_agree(graph: Graph) -> None:
    """For any valid graph of these stages, each sink's outputs are equal as multisets,
    with the process runtime chaining stages or not."""
    inline = InlineRuntime().run(graph).outputs
    for chaining in (True, False):
        process = ProcessRuntime(chaining=chaining).run(graph).outputs
        assert set(inline) == set(process) == set(graph.sinks())
        for sink in inline:
            assert Counter(process[sink]) == Counter(inline[sink]), (sink, chaining)
