"""The one walk of DeltaFrom (walg.format.chain.walk_bases / dependents), and the flows
that use it agreeing with it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walg.errors import IntegrityError
from walg.format.chain import DeltaChain, dependents, walk_bases

# name -> DeltaFrom (None: a full backup)
STORE: dict[str, str | None] = {
    "full": None,
    "d1": "full",
    "d2": "d1",
    "orphan": "gone",
    "orphan2": "orphan",
    "loop_a": "loop_b",
    "loop_b": "loop_a",
    "self": "self",
    "empty": "",
}


@pytest.mark.parametrize(
    ("start", "names", "missing", "loop"),
    [
        ("full", ("full",), "", ""),
        ("d1", ("d1", "full"), "", ""),
        ("d2", ("d2", "d1", "full"), "", ""),
        ("orphan", ("orphan",), "gone", ""),
        ("orphan2", ("orphan2", "orphan"), "gone", ""),
        ("loop_a", ("loop_a", "loop_b"), "", "loop_a"),
        ("self", ("self",), "", "self"),
        ("empty", ("empty",), "", ""),
    ],
)
def test_walk_bases_table(start: str, names: tuple[str, ...], missing: str, loop: str) -> None:
    """The walk stops at a full backup, a missing base or a loop, and says which."""
    chain = walk_bases(start, STORE)
    assert chain == DeltaChain(names, missing, loop)
    assert chain.complete == (not missing and not loop)
    assert walk_bases(start, STORE.__getitem__) == chain


def test_walk_is_lazy_and_stops_at_the_missing_base() -> None:
    """No backup beyond a missing base or a loop is looked up (fetch reads each from storage)."""
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return STORE[name]

    assert walk_bases("orphan2", lookup).missing == "gone"
    assert asked == ["orphan2", "orphan", "gone"]


@pytest.mark.parametrize(
    ("start", "recorded", "full"),
    [
        ("d2", {}, "full"),  # a complete walk ends at the full backup
        ("d2", {"d2": "other"}, "full"),  # ... whatever a damaged sentinel records
        ("orphan2", {"orphan2": "root"}, "root"),  # broken: DeltaFullName
        ("orphan2", {"orphan": "root"}, "root"),  # old sentinel without it: an ancestor's
        ("orphan2", {}, "gone"),  # nothing recorded: the missing base
        ("loop_a", {}, "loop_a"),
    ],
)
def test_full_name(start: str, recorded: dict[str, str], full: str) -> None:
    """The chain's full backup: the walk's end, else DeltaFullName, else the oldest name."""
    assert walk_bases(start, STORE).full_name(recorded.get) == full


def test_check_names_the_missing_base_and_the_loop() -> None:
    """One wording for a broken chain, used by backup-fetch."""
    walk_bases("d2", STORE).check("file:///x")
    with pytest.raises(
        IntegrityError, match="orphan is a delta of gone, which is not in file:///x"
    ):
        walk_bases("orphan2", STORE).check("file:///x")
    with pytest.raises(IntegrityError, match="the delta chain of loop_a loops back to loop_a"):
        walk_bases("loop_a", STORE).check("file:///x")


def test_dependents_table() -> None:
    """Forward: every backup based on a name, directly or not, never the name itself."""
    pairs = list(STORE.items())
    assert dependents("full", pairs) == {"d1", "d2"}
    assert dependents("d2", pairs) == set()
    assert dependents("gone", pairs) == {"orphan", "orphan2"}
    assert dependents("loop_a", pairs) == {"loop_b"}
    assert dependents("self", pairs) == set()


@st.composite
def stores(draw: st.DrawFn) -> dict[str, str | None]:
    """Backups b0..bn, each full or a delta of any name (existing or not, loops allowed)."""
    size = draw(st.integers(1, 8))
    names = [f"b{i}" for i in range(size)]
    bases = st.sampled_from([*names, "x0", "x1"]) | st.none()
    return {name: draw(bases) for name in names}


@given(stores(), st.data())
def test_walk_and_dependents_agree(store: dict[str, str | None], data: st.DataObject) -> None:
    """Each step of a walk follows DeltaFrom; a backup is a dependent of each of its bases."""
    start = data.draw(st.sampled_from(sorted(store)))
    chain = walk_bases(start, store)
    assert len(set(chain.names)) == len(chain.names)
    for child, base in zip(chain.names, chain.names[1:], strict=False):
        assert store[child] == base
    last = store[chain.names[-1]]
    if not last:
        assert chain.complete
    elif last in store:
        assert (chain.missing, chain.loop) == ("", last) and last in chain.names
    else:
        assert (chain.missing, chain.loop) == (last, "")
    for base in chain.bases:
        assert start in dependents(base, store.items())
    for other in dependents(start, list(store.items())):
        assert start in walk_bases(other, store).bases
