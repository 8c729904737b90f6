"""Nothing a task started outlives its sandbox, even when the worker dies hard."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bwrap is not installed"
)

WORKER = """
import sys, time
from pathlib import Path
from nerd.worker.runtimes.process import ProcessRuntime, RunSpec
spec = RunSpec("t-00000001", ["sh", "-c", sys.argv[1]])
ProcessRuntime(use_bwrap=True).start(spec, Path(sys.argv[2]))
time.sleep(600)
"""


def _pids_running(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_background_child_dies_when_the_worker_is_killed(tmp_path: Path) -> None:
    marker = f"sleep {300 + secrets.randbelow(600)}.{secrets.randbelow(10**6)}"
    script = f"{marker} & {marker}; wait"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, script, str(tmp_path)])
    _wait_for(lambda: len(_pids_running(marker)) >= 2)

    worker.kill()
    worker.wait()

    _wait_for(lambda: not _pids_running(marker))
    assert _pids_running(marker) == []
