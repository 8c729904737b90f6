"""Fixtures for the CLI tests: an isolated home, and nerd run in-process or as a
subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import Nerd, Result

from nerd.cli.main import run


@pytest.fixture
def nerd(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Nerd:
    """Run one nerd command line in this process, through its real error handler."""

    def invoke(*args: str, stdin: bytes = b"") -> Result:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsys.readouterr()
        code = run(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


@pytest.fixture
def nerd_process(home: Path) -> Nerd:
    """Run nerd as a subprocess, the way a user's shell does."""

    def invoke(*args: str, stdin: bytes = b"", timeout_s: float = 60) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "nerd.cli.main", *args],
            input=stdin,
            capture_output=True,
            timeout=timeout_s,
            env=dict(os.environ),
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    return invoke
