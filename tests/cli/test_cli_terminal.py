"""`nerd login` at a terminal: the exact prompts, a hidden password, Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import RunningServer, create_user

PROMPT_TIMEOUT_S = 20.0


class Terminal:
    """nerd running on a pseudo-terminal, read and typed into like a person would."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nerd.cli.main", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.seen = b""
        self._is_open = True

    def expect(self, text: str) -> None:
        deadline = time.monotonic() + PROMPT_TIMEOUT_S
        while text.encode() not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                self.seen += os.read(self.master, 4096)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def interrupt(self) -> int:
        """Ctrl-C once the prompt waits for input; the exit code.

        A signal that lands after the prompt is printed but before the read starts is
        only seen at the next input, so wait a moment, and press it again if needed.
        """
        for _ in range(3):
            time.sleep(0.5)
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        return self.finish()

    def finish(self) -> int:
        try:
            code = self.process.wait(timeout=PROMPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        self._drain()
        self.end()
        return code

    def end(self) -> None:
        """Kill nerd if it still runs and close the terminal; safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._is_open:
            os.close(self.master)
            self._is_open = False

    def _drain(self) -> None:
        while select.select([self.master], [], [], 0.1)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.seen += chunk


@pytest.fixture
def start_terminal(
    terminal_env: dict[str, str],
) -> Iterator[Callable[[list[str]], Terminal]]:
    """Start nerd on a terminal; what a failed test left running is ended with it."""
    started: list[Terminal] = []

    def start(args: list[str]) -> Terminal:
        started.append(Terminal(args, terminal_env))
        return started[-1]

    yield start
    for each in started:
        each.end()


@pytest.fixture
def terminal_env(home: Path, server: RunningServer) -> dict[str, str]:
    folder = home / ".nerd"
    folder.mkdir()
    endpoint = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (folder / "config.json").write_text(json.dumps(endpoint))
    return dict(os.environ)


def test_login_prompts_exactly_and_hides_the_password(
    server: RunningServer, start_terminal: Callable[[list[str]], Terminal], home: Path
) -> None:
    password = create_user(server, "grace")
    terminal = start_terminal(["login"])

    terminal.expect("Please enter your nerd username and password.\r\nUsername: ")
    terminal.type("grace")
    terminal.expect("Password: ")
    terminal.type(password)
    code = terminal.finish()

    assert code == 0, terminal.seen
    assert password.encode() not in terminal.seen
    assert b"Logged in as 'grace'" in terminal.seen
    assert (home / ".nerd" / "session.json").is_file()


def test_ctrl_c_at_the_prompt_exits_130(
    start_terminal: Callable[[list[str]], Terminal],
) -> None:
    terminal = start_terminal(["login"])
    terminal.expect("Username: ")

    code = terminal.interrupt()

    assert code == 130
    assert b"nerd: error: interrupted" in terminal.seen
    assert b"Traceback" not in terminal.seen
