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
    """Items emitted by each sink (in arrival order), the progress of every stage, and the
    CPU seconds of the workers by stage (``other[CHAIN]``: a chain's processes outside its
    stages' hooks: channels, the runtime, threads the stages started), summed over the
    workers that reported them (the process runtime only)."""

    outputs: dict[str, list[Any]] = field(default_factory=dict)
    progress: dict[str, StageProgress] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            self.cpu[stage] = self.cpu.get(stage, 0.0) + value

    def add_progress(self, stage: str, nbytes: int, items: int) -> None:
        entry = self.progress.setdefault(stage, StageProgress())
        entry.bytes += nbytes
        entry.items += items


ProgressCallback = Callable[[Mapping[str, StageProgress]], None]
LogCallback = Callable[[Mapping[str, Any]], None]

