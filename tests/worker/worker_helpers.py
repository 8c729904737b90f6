"""Helpers for the worker tests (kept out of conftest so tests can import them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

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
