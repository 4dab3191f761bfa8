"""What a run returns and what it reports while it goes, shared by both runtimes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LogCallback", "ProgressCallback", "RunResult", "StageProgress"]


@dataclass
class StageProgress:
    """Work a stage reported so far, summed over its workers."""

    bytes: int = 0
    items: int = 0


@dataclass
class RunResult:
    """Items emitted by each sink (in arrival order) and the progress of every stage."""

    outputs: dict[str, list[Any]] = field(default_factory=dict)
    progress: dict[str, StageProgress] = field(default_factory=dict)

    def add_progress(self, stage: str, nbytes: int, items: int) -> None:
        entry = self.progress.setdefault(stage, StageProgress())
        entry.bytes += nbytes
        entry.items += items


ProgressCallback = Callable[[Mapping[str, StageProgress]], None]
LogCallback = Callable[[Mapping[str, Any]], None]

