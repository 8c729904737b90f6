"""Helpers for the end-to-end tests: the real ``nerd`` command line, run the way a
user's shell runs it, with a HOME and config of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import NERD_ENV, RunningServer


def nerd_script() -> list[str]:
    script = Path(sys.executable).parent / "nerd"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from nerd.cli.main import main; main()"]


@dataclass
class Done:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Shell:
    """Runs ``nerd`` subcommands in the test's environment."""

    env: dict[str, str]
    home: Path

    def __call__(self, *args: str, stdin: str = "", timeout_s: float = 60) -> Done:
        done = subprocess.run(
            [*nerd_script(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout_s,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str = "", timeout_s: float = 60) -> Done:
        """Run a command that must succeed."""
        done = self(*args, stdin=stdin, timeout_s=timeout_s)
        assert done.exit_code == 0, f"nerd {' '.join(args)}:\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        """A command's JSON document (``--output json`` goes before any ``--``)."""
        split = args.index("--") if "--" in args else len(args)
        return self.ok(*args[:split], "--output", "json", *args[split:]).json()

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*nerd_script(), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def isolated_env(home: Path, server: RunningServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NERD_ENV}
    config = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (home / "config.json").write_text(json.dumps(config))
    env.update(
        HOME=str(home),
        NERD_CONFIG_FILE=str(home / "config.json"),
        NERD_SESSION_FILE=str(home / "session.json"),
    )
    return env


def stop_started_workers(home: Path) -> None:
    """SIGTERM the workers ``nerd worker start`` made under this HOME, then wait."""
    pids = [int(p.stem) for p in (home / ".nerd" / "workers").glob("*.json")]
    running = [pid for pid in pids if is_worker(pid)]
    for pid in running:
        os.kill(pid, 15)
    wait_until(lambda: not any(map(is_worker, running)), timeout_s=20)


def is_worker(pid: int) -> bool:
    try:
        return b"nerd.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"still not true after {timeout_s}s")
