"""Ctrl-C and SIGTERM in the parent stop every worker; a killed parent leaves no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def start_parent(folder: Path, chained: bool = True) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{ROOT}")
    mode = [] if chained else ["unchained"]
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "pipeline_parent.py"), str(folder), *mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    return proc


def worker_pids(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in folder.glob("*.pid")]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_all_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@pytest.mark.parametrize(
    ("signum", "code", "error"),
    [(signal.SIGINT, 130, "Cancelled"), (signal.SIGTERM, 143, "Terminated")],
)
@pytest.mark.parametrize("chained", [True, False])
def test_parent_signal_stops_all_workers(
    tmp_path: Path, signum: int, code: int, error: str, chained: bool
) -> None:
    """SIGINT (exit 130) or SIGTERM (exit 143) to the parent cancels the run: workers
    closed and gone, whether the two stages share processes (a chain) or not."""
    proc = start_parent(tmp_path, chained)
    pids = worker_pids(tmp_path)
    assert len(pids) == 4
    assert len(set(pids)) == (2 if chained else 4)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == code, out
    assert out.startswith(f"{error}:")
    assert wait_all_gone(pids, 5) == []
    assert len(list(tmp_path.glob("*.closed"))) == 4


@pytest.mark.parametrize("chained", [True, False])
def test_killed_parent_leaves_no_orphans(tmp_path: Path, chained: bool) -> None:
    """If the parent is SIGKILLed, its workers notice and exit on their own."""
    proc = start_parent(tmp_path, chained)
    pids = worker_pids(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert wait_all_gone(pids, 10) == []


def test_unflushed_parent_output_is_not_repeated_by_workers() -> None:
    """Text the parent buffered before a run is printed once, not once per forked worker."""
    code = (
        "import functools, pipeline_stages as ps\n"
        "from walg.pipeline import Graph, ProcessRuntime, StageSpec\n"
        "print('before-run')\n"
        "g = Graph.chain(StageSpec('s', functools.partial(ps.Numbers, 5), workers=3),"
        " StageSpec('t', ps.Total, workers=2))\n"
        "print(sum(ProcessRuntime().run(g).outputs['t']))\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{ROOT}")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["before-run", "10"]


def test_failing_workers_print_no_tracebacks() -> None:
    """When several workers fail at once, the losers are cancelled while reporting; none of
    them may print a traceback to the terminal (stderr holds only what the parent says)."""
    code = (
        "import functools, pipeline_stages as ps\n"
        "from walg.pipeline import Graph, ProcessRuntime, StageSpec\n"
        "for _ in range(15):\n"
        "    g = Graph.chain(StageSpec('s', functools.partial(ps.Numbers, 64), workers=2),\n"
        "                    StageSpec('f', functools.partial(ps.FailAfter, 1), workers=3))\n"
        "    try:\n"
        "        ProcessRuntime(grace=5).run(g)\n"
        "    except ps.Boom:\n"
        "        pass\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{HERE}:{ROOT}")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "Traceback" not in out.stderr, out.stderr
