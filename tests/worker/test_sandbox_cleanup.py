"""Nothing a task started outlives its sandbox, even when the worker dies hard."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nerd.worker.runtimes.process import ProcessRuntime, RunSpec

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bwrap is not installed"
)

# A worker in a process of its own: it starts the task, then waits to be killed,
# or (with "now") kills itself while bwrap is still setting the sandbox up.
WORKER = """
import os, signal, sys, time
from pathlib import Path
from nerd.worker.runtimes.process import ProcessRuntime, RunSpec
spec = RunSpec("t-00000001", ["sh", "-c", sys.argv[1]])
ProcessRuntime(use_bwrap=True).start(spec, Path(sys.argv[2]))
if sys.argv[3] == "now":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""


@pytest.fixture
def marker() -> Iterator[str]:
    """A command line no other process has; whatever still runs it is killed after."""
    marker = f"sleep {300 + secrets.randbelow(600)}.{secrets.randbelow(10**6)}"
    yield marker
    for pid in _pids_running(marker):
        subprocess.run(["kill", "-9", str(pid)], check=False, stderr=subprocess.DEVNULL)


def _pids_running(marker: str, *, exact: bool = False) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-fx" if exact else "-f", marker], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def _start_worker(script: str, run_dir: Path, when: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WORKER, script, str(run_dir), when])


def test_a_background_child_dies_when_the_worker_is_killed(
    tmp_path: Path, marker: str
) -> None:
    # One child in the task's process group, one in a session of its own.
    script = f"setsid {marker} & {marker} & {marker}; wait"
    worker = _start_worker(script, tmp_path, "later")
    _wait_for(lambda: len(_pids_running(marker, exact=True)) == 3)
    assert len(_pids_running(marker, exact=True)) == 3

    worker.kill()
    worker.wait()

    _wait_for(lambda: not _pids_running(marker))
    assert _pids_running(marker) == []


@pytest.mark.parametrize("attempt", range(3))
def test_nothing_survives_a_worker_killed_while_bwrap_is_still_starting(
    tmp_path: Path, marker: str, attempt: int
) -> None:
    worker = _start_worker(f"{marker} & {marker}; wait", tmp_path, "now")
    worker.wait()

    _wait_for(lambda: not _pids_running(marker))
    assert _pids_running(marker) == []


def test_a_child_in_its_own_session_dies_when_the_run_ends(
    tmp_path: Path, marker: str
) -> None:
    spec = RunSpec("t-00000001", ["sh", "-c", f"setsid {marker} & echo started"])

    process = ProcessRuntime(use_bwrap=True).start(spec, tmp_path / "run")

    assert process.wait(30) == 0
    _wait_for(lambda: not _pids_running(marker))
    assert _pids_running(marker) == []
