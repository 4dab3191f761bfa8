"""Which stages of a graph share a worker process: the runtime's chaining plan (pure).

A stage is *chained* to the stage before it when they are joined one-to-one: the first
feeds only the second, the second is fed only by the first, and both have the same number
of workers. Worker ``i`` of such a chain runs every stage of it in one process, handing
each item to the next stage as a plain call (as stream processors chain operators), so its
bytes are never copied through a channel. Channels remain where a stage has several inputs
or outputs, or where the widths differ (a source feeding many workers, which then take
work as they are free).

Chaining keeps every guarantee of the graph: each stage still gets ``workers`` instances,
its hooks are called in the same order, and a keyed stage still sees the items of one key
in the order one upstream worker emitted them (its key is only ignored inside a chain: the
items of a key stay on the worker that produced them, as the key's contract already
requires them to come from one upstream worker).
"""

from __future__ import annotations

import itertools

from walg.pipeline.graph import Graph

__all__ = ["Chains", "describe", "plan_chains"]

Chains = tuple[tuple[str, ...], ...]


def plan_chains(graph: Graph, enabled: bool = True) -> Chains:
    """The stages of ``graph`` grouped into chains, each chain in stage order and the chains
    in topological order; with ``enabled`` false every stage is a chain of its own."""
    order = graph.topological_order()
    if not enabled:
        return tuple((name,) for name in order)
    chains: list[list[str]] = []
    tail_of: dict[str, list[str]] = {}
    for name in order:
        ups = graph.upstream(name)
        if len(ups) == 1 and _one_to_one(graph, ups[0], name):
            chain = tail_of.pop(ups[0])
            chain.append(name)
        else:
            chain = [name]
            chains.append(chain)
        tail_of[name] = chain
    return tuple(tuple(chain) for chain in chains)


def _one_to_one(graph: Graph, up: str, down: str) -> bool:
    return graph.downstream(up) == [down] and graph.spec(up).workers == graph.spec(down).workers


def describe(graph: Graph, chains: Chains) -> str:
    """One line naming the processes a run starts, e.g.
    ``parts x1 -> [tar | compress | upload] x2``: a bracketed group runs in one process per
    worker; ``->`` is a channel."""
    words = []
    for chain in chains:
        workers = graph.spec(chain[0]).workers
        body = chain[0] if len(chain) == 1 else "[" + " | ".join(chain) + "]"
        words.append(f"{body} x{workers}")
    if all(len(graph.downstream(chain[-1])) <= 1 for chain in chains) and _is_line(graph, chains):
        return " -> ".join(words)
    edges = sorted({(_chain_of(chains, a), _chain_of(chains, b)) for a, b in graph.edges})
    links = ", ".join(f"{words[a]} -> {words[b]}" for a, b in edges if a != b)
    return links or "; ".join(words)


def _is_line(graph: Graph, chains: Chains) -> bool:
    for first, second in itertools.pairwise(chains):
        if graph.downstream(first[-1]) != [second[0]] or graph.upstream(second[0]) != [first[-1]]:
            return False
    return True


def _chain_of(chains: Chains, name: str) -> int:
    for i, chain in enumerate(chains):
        if name in chain:
            return i
    raise KeyError(name)
