"""Graph declaration and validation, before anything runs."""

from __future__ import annotations

import functools

import pipeline_stages as ps
import pytest

from walg.errors import GraphInvalid
from walg.pipeline import Graph, StageSpec


def s(name: str, workers: int = 1, bound: int = 4) -> StageSpec:
    return StageSpec(name, ps.Total, workers=workers, queue_bound=bound)


def test_chain_builds_edges_in_order() -> None:
    """Graph.chain links each stage to the next."""
    g = Graph.chain(s("a"), s("b"), s("c"))
    assert g.edges == (("a", "b"), ("b", "c"))
    assert g.sources() == ["a"] and g.sinks() == ["c"]
    assert g.topological_order() == ["a", "b", "c"]


def test_expected_ends_count_upstream_workers() -> None:
    """A stage's input expects one END per worker of every upstream stage."""
    g = Graph((s("a", 3), s("b", 2), s("c")), (("a", "c"), ("b", "c")))
    g.validate()
    assert g.expected_ends("c") == 5


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (Graph(()), "no stages"),
        (
            Graph((s("a"), s("b"), s("c")), (("a", "b"), ("b", "c"), ("c", "b"))),
            "cycle through b, c",
        ),
        (Graph((s("a"),), (("a", "a"),)), "cycle through a"),
        (Graph((s("a"),), (("a", "missing"),)), "does not exist: 'missing'"),
        (Graph((s("a"), s("a"))), "unique: a"),
        (Graph((s("a"), s("b")), (("a", "b"), ("a", "b"))), "declared twice"),
        (Graph((s("a", workers=0),)), "workers must be an integer >= 1"),
        (Graph((s("a", bound=0),)), "queue_bound must be an integer >= 1"),
        (Graph((StageSpec("a", ps.Total, slot_size=100),)), "slot_size must be an integer >= 4096"),
        (Graph((StageSpec("a", lambda: ps.Total()),)), "cannot be pickled"),
    ],
)
def test_invalid_graphs_are_refused(graph: Graph, message: str) -> None:
    """validate() names what is wrong with a graph that cannot run."""
    with pytest.raises(GraphInvalid, match=message):
        graph.validate()


def test_partial_factories_are_accepted() -> None:
    """A functools.partial of a module-level class is a valid, picklable factory."""
    Graph.chain(StageSpec("a", functools.partial(ps.Numbers, 3)), s("b")).validate()
