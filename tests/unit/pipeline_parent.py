"""A parent process for the signal tests: runs an endless graph until it is signalled.

Usage: python pipeline_parent.py FOLDER [unchained]. Workers write FOLDER/<stage>-<i>.pid;
the parent prints READY once every worker has opened, and on exit prints the error it got.
By default the two stages run chained (one process per worker), else one process each.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path

import pipeline_stages as ps

from walg.errors import WalgError
from walg.pipeline import Graph, ProcessRuntime, StageSpec


def announce_when_open(folder: Path, count: int) -> None:
    while len(list(folder.glob("*.open"))) < count:
        time.sleep(0.02)
    print("READY", flush=True)


def main() -> int:
    folder = Path(sys.argv[1])
    graph = Graph.chain(
        StageSpec("src", functools.partial(ps.TrackedForever, str(folder)), workers=2),
        StageSpec("slow", functools.partial(ps.Tracked, str(folder)), workers=2, queue_bound=1),
    )
    threading.Thread(target=announce_when_open, args=(folder, 4), daemon=True).start()
    try:
        ProcessRuntime(grace=5, chaining=sys.argv[2:] != ["unchained"]).run(graph)
    except WalgError as err:
        print(f"{type(err).__name__}: {err}", flush=True)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
