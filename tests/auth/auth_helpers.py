"""Helpers for the auth tests: nerd as a subprocess, and a WebDriver for Chromium.

The WebDriver client speaks the W3C WebDriver protocol to Debian's ``chromedriver``
over HTTP on 127.0.0.1; it drives a real headless Chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from helpers import free_port

ALICE = "alice"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


NerdRunner = Callable[..., Result]


def nerd_command() -> list[str]:
    return [sys.executable, "-m", "nerd.cli.main"]


def run_nerd(
    args: list[str], *, stdin: bytes = b"", env: dict[str, str], timeout_s: float = 60
) -> Result:
    done = subprocess.run(
        [*nerd_command(), *args],
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        env=env,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


class WebDriver:
    """A headless Chromium driven through chromedriver; stop() ends both."""

    def __init__(self, profile_dir: Path) -> None:
        self.port = free_port()
        self._process = subprocess.Popen(
            [str(CHROMEDRIVER), f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        self._wait_ready()
        args = [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": str(CHROMIUM), "args": args},
        }
        answer = self._call(
            "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}
        )
        self.session = answer["sessionId"]
        # Finding an element waits for it: a click that submits a form returns
        # before the next page is there.
        self._session_call("POST", "/timeouts", {"implicit": 20_000})

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self._http.get("/status").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("chromedriver did not start")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        value = response.json()["value"]
        if response.status_code >= 400:
            raise RuntimeError(f"webdriver {method} {path}: {value}")
        return value

    def _session_call(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def go(self, url: str) -> None:
        self._session_call("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self._session_call("GET", "/url"))

    def text_of(self, css: str) -> str:
        return str(self._session_call("GET", f"/element/{self._find(css)}/text"))

    def type_into(self, css: str, text: str) -> None:
        self._session_call("POST", f"/element/{self._find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._session_call("POST", f"/element/{self._find(css)}/click", {})

    def wait_for_url(self, prefix: str, timeout_s: float = 20) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (current := self.url).startswith(prefix):
                return current
            time.sleep(0.1)
        raise AssertionError(f"the browser stayed at {self.url}, not {prefix}")

    def _find(self, css: str) -> str:
        found = self._session_call(
            "POST", "/element", {"using": "css selector", "value": css}
        )
        return str(found[ELEMENT])

    def stop(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self._http.close()
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def has_chromium() -> bool:
    return CHROMIUM.exists() and shutil.which(str(CHROMEDRIVER)) is not None


class Spawned:
    """The nerd processes a test started; end() stops whichever still run."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[str]] = []

    def __call__(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        process = spawn_nerd(args, env)
        self._processes.append(process)
        return process

    def end(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


def spawn_nerd(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start nerd with its stderr readable line by line."""
    return subprocess.Popen(
        [*nerd_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )


def read_login_url(process: subprocess.Popen[str], timeout_s: float = 30) -> str:
    """The login URL the CLI prints; fails if the CLI exits first."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.strip().startswith("http"):
            return line.strip()
    raise AssertionError(f"no login URL in: {''.join(seen)}")


def env_without_browser() -> dict[str, str]:
    """The environment for a CLI whose own browser opening does nothing visible."""
    return {**os.environ, "BROWSER": "true"}
