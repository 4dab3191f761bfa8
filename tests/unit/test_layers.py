"""walg's layers, as README's architecture section states them: every import between walg's
packages runs downward (or stays inside one package), there is no import cycle between
modules, and no module is over 450 lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

WALG = Path(__file__).resolve().parents[2] / "walg"

# Lower numbers are lower layers; a module may import its own layer's package and below.
LAYERS: dict[str, int] = {
    "walg": 0, "walg.errors": 0, "walg.logs": 0, "walg.fsutil": 0, "walg.checksum": 0,
    "walg.sizes": 0,
    "walg.config": 1, "walg.pipeline": 1, "walg.interrupts": 1, "walg.ratelimit": 1,
    "walg.progress": 1,
    "walg.storage": 2, "walg.postgres": 2, "walg.crypto": 2, "walg.compression": 2,
    "walg.format": 3,
    "walg.stages": 4,
    "walg.backup": 5, "walg.wal": 5,
    "walg.commands": 6, "walg.cli": 6, "walg.cli_parser": 6, "walg.__main__": 6,
}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(WALG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package(module: str) -> str:
    """The layer table's key for ``module``: ``walg.x`` for ``walg.x.y...``."""
    return ".".join(module.split(".")[:2])


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in WALG.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The walg modules ``path`` imports (at the top or inside functions; ``from m import
    x`` counts as ``m.x`` when that is a module, else ``m``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in known} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("walg") and m in known}


def graph() -> dict[str, set[str]]:
    table = modules()
    known = set(table)
    return {name: imports(path, known) - {name} for name, path in table.items()}


def test_every_package_has_a_layer() -> None:
    """Each walg package or top-level module is placed in the layer table."""
    assert {package(m) for m in modules()} <= set(LAYERS)


def test_imports_run_downward() -> None:
    """No module imports a package of a higher layer, nor another package of its own layer
    among format, stages and the flows (backup and wal do not import each other)."""
    wrong = []
    for module, targets in graph().items():
        mine = LAYERS[package(module)]
        for target in targets:
            theirs = LAYERS[package(target)]
            sideways = theirs == mine and package(target) != package(module) and 3 <= mine <= 5
            if theirs > mine or sideways:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    """No chain of imports between walg's modules leads back to where it started."""
    edges = graph()
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the current path, 2 done
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state[target] == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif state[target] == 0:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if state[module] == 0:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(WALG.rglob("*.py")), ids=lambda p: str(p.name))
def test_modules_stay_small(path: Path) -> None:
    """No module of walg/ is over 450 lines."""
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_test_modules_have_unique_names() -> None:
    """No two test modules share a file name: pytest imports them by basename (the test
    folders are not packages), so a second one breaks collection of the whole suite."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a name"
        seen[path.name] = path
