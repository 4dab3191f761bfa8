"""A generic runtime for graphs of stages run in worker processes.

Declare a :class:`Graph` of :class:`StageSpec` (plain, picklable data), then run it with
:class:`ProcessRuntime` (one process per worker, bounded shared-memory channels) or
:class:`InlineRuntime` (one process, for tests and debugging). Nothing here knows about
PostgreSQL.
"""

from walg.pipeline.channel import Channel, EndOfStream
from walg.pipeline.graph import DEFAULT_SLOT_SIZE, Graph, StageSpec
from walg.pipeline.inline import InlineRuntime
from walg.pipeline.remote import RemoteTraceback
from walg.pipeline.result import RunResult, StageProgress
from walg.pipeline.runtime import ProcessRuntime
from walg.pipeline.stage import Stage, WorkerContext

__all__ = [
    "DEFAULT_SLOT_SIZE",
    "Channel",
    "EndOfStream",
    "Graph",
    "InlineRuntime",
    "ProcessRuntime",
    "RemoteTraceback",
    "RunResult",
    "Stage",
    "StageProgress",
    "StageSpec",
    "WorkerContext",
]
