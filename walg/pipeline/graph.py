"""A stage graph declared as plain data, and its validation."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from walg.errors import GraphInvalid
from walg.pipeline.stage import Stage
from walg.sizes import CHUNK

__all__ = ["DEFAULT_SLOT_SIZE", "Graph", "StageSpec"]

DEFAULT_SLOT_SIZE = CHUNK + (64 << 10)  # a chunk and the rest of its item
"""Big enough for a 1 MiB buffer plus its item header in a single slot."""


@dataclass(frozen=True)
class StageSpec:
    """How to run one stage.

    ``factory`` builds the stage inside each worker; it must be picklable (a module-level
    class or function, or a functools.partial of one with picklable arguments).
    ``queue_bound`` is the number of slots of the stage's input channel, each ``slot_size``
    bytes; an item larger than a slot takes several.

    ``key`` makes the input keyed: every worker gets its own channel, and an item goes to
    worker ``key(item) % workers``. Items with the same key are then handled by the same
    worker in the order one upstream worker emitted them (a stream of chunks of one tar part
    stays whole and ordered). Without ``key`` all workers share one channel.
    """

    name: str
    factory: Callable[[], Stage]
    workers: int = 1
    queue_bound: int = 4
    slot_size: int = DEFAULT_SLOT_SIZE
    key: Callable[[Any], int] | None = None


@dataclass(frozen=True)
class Graph:
    """Stages and the edges between them. Stages without inputs are sources; stages
    without outputs are sinks, whose items are returned to the caller. A stage with several
    outputs sends each item to every one of them."""

    stages: tuple[StageSpec, ...]
    edges: tuple[tuple[str, str], ...] = ()

    @classmethod
    def chain(cls, *stages: StageSpec) -> Graph:
        """A linear graph: each stage feeds the next."""
        edges = tuple((a.name, b.name) for a, b in itertools.pairwise(stages))
        return cls(tuple(stages), edges)

    def spec(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise GraphInvalid(f"no stage named {name!r}")

    def upstream(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def downstream(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    def sources(self) -> list[str]:
        return [s.name for s in self.stages if not self.upstream(s.name)]

    def sinks(self) -> list[str]:
        return [s.name for s in self.stages if not self.downstream(s.name)]

    def expected_ends(self, name: str) -> int:
        """How many END markers the input of ``name`` receives: one per upstream worker."""
        return sum(self.spec(up).workers for up in self.upstream(name))

    def topological_order(self) -> list[str]:
        """Stage names, every stage after all of its inputs; raises on a cycle."""
        indegree = {s.name: len(self.upstream(s.name)) for s in self.stages}
        ready = [s.name for s in self.stages if indegree[s.name] == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for nxt in self.downstream(name):
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) != len(self.stages):
            stuck = sorted(set(indegree) - set(order))
            raise GraphInvalid(f"the stage graph has a cycle through {', '.join(stuck)}")
        return order

    def validate(self) -> None:
        """Raise :class:`GraphInvalid` unless the graph can run."""
        if not self.stages:
            raise GraphInvalid("the stage graph has no stages")
        names = [s.name for s in self.stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GraphInvalid(f"stage names must be unique: {', '.join(duplicates)}")
        for spec in self.stages:
            _check_spec(spec)
        _check_edges(self.edges, set(names))
        self.topological_order()


def _check_spec(spec: StageSpec) -> None:
    from walg.pipeline.channel import MIN_SLOT_SIZE

    for field, value, low in (
        ("workers", spec.workers, 1),
        ("queue_bound", spec.queue_bound, 1),
        ("slot_size", spec.slot_size, MIN_SLOT_SIZE),
    ):
        if not isinstance(value, int) or value < low:
            raise GraphInvalid(
                f"stage {spec.name!r}: {field} must be an integer >= {low}, got {value!r}"
            )
    try:
        pickle.dumps((spec.factory, spec.key))
    except Exception as exc:
        raise GraphInvalid(
            f"stage {spec.name!r}: its factory or key cannot be pickled ({exc})",
            hint="use a module-level class or function, or functools.partial of one",
        ) from exc


def _check_edges(edges: Iterable[tuple[str, str]], names: set[str]) -> None:
    seen: set[tuple[str, str]] = set()
    for edge in edges:
        a, b = edge
        for end in (a, b):
            if end not in names:
                raise GraphInvalid(
                    f"edge {a!r} -> {b!r} names a stage that does not exist: {end!r}"
                )
        if a == b:
            raise GraphInvalid(f"the stage graph has a cycle through {a}")
        if edge in seen:
            raise GraphInvalid(f"edge {a!r} -> {b!r} is declared twice")
        seen.add(edge)
