"""The real ``nerd`` command line for the workload tests."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Done:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    """The real ``nerd`` command line, with a HOME and config of the test's own."""

    env: dict[str, str]

    def __call__(self, *args: str, stdin: str = "") -> Done:
        done = subprocess.run(
            [sys.executable, "-m", "nerd.cli.main", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        return Done(done.returncode, done.stdout, done.stderr)
