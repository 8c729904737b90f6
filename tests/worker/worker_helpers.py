"""Helpers for the worker tests (kept out of conftest so tests can import them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from nerd.models import Task


def py(code: str) -> list[str]:
    """The argv of a task that runs ``code`` with this Python."""
    return [sys.executable, "-c", code]


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"still not true after {timeout_s}s: {condition}")


WaitForTask = Callable[..., Task]


def is_running_with_env(entry: str) -> bool:
    """Whether a live process has ``entry`` (``KEY=value``) in its environment.

    Tasks run in their own PID namespace, so the pid a task sees is not the host's;
    a unique variable in its environment finds it from outside.
    """
    needle = entry.encode() + b"\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes() + b"\0":
                continue
            if (proc / "stat").read_text().split()[2] != "Z":
                return True
        except OSError:
            continue
    return False
