"""Helpers for the container tests: a busybox image built here, the real ``nerd``
command line with a HOME of its own, and waiting for tasks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import RunningServer

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "echo", "ls", "dd", "sleep", "env", "mkdir", "wc", "true")
NERD_ENV = (
    "NERD_CONFIG_FILE",
    "CONFIG",
    "NERD_CONFIG_JSON",
    "NERD_SESSION_FILE",
    "NERD_JWT",
    "NERD_JWT_REFRESH_TOKEN",
    "NERD_PROJECT",
    "NERD_OUTPUT",
    "NERD_DEBUG",
)
# This kernel refuses crun and systemd cgroups, and rlimits above the host's.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def has_podman() -> bool:
    return shutil.which("podman") is not None and BUSYBOX.is_file()


def build_busybox_image(folder: Path, tag: str) -> None:
    """Import a one-binary root file system as ``tag``; its entrypoint is ``sh -c``."""
    tarball = folder / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for name in ("input", "output", "tmp", "bin"):
            tar.addfile(_dir_info(name))
        tar.add(BUSYBOX, "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    change = 'ENTRYPOINT ["/bin/sh", "-c"]'
    podman("import", "--change", change, str(tarball), tag)


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


@dataclass
class Done:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Nerd:
    """Runs ``nerd`` subcommands with the test's HOME, config and environment."""

    env: dict[str, str]
    home: Path

    def __call__(self, *args: str, stdin: str = "", timeout_s: float = 60) -> Done:
        done = subprocess.run(
            [*_nerd_script(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout_s,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str = "") -> Done:
        done = self(*args, stdin=stdin)
        assert done.exit_code == 0, f"nerd {' '.join(args)}:\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        split = args.index("--") if "--" in args else len(args)
        return self.ok(*args[:split], "--output", "json", *args[split:]).json()

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*_nerd_script(), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for_task(self, task: str, timeout_s: float = 90) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def is_done() -> bool:
            found.update(self.json("task", "describe", task))
            return found["status"] in ("SUCCESS", "FAILED", "STOPPED")

        wait_until(is_done, timeout_s)
        return found


def _nerd_script() -> list[str]:
    script = Path(sys.executable).parent / "nerd"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from nerd.cli.main import main; main()"]


def isolated_env(
    home: Path, server: RunningServer, extra: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NERD_ENV}
    config = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (home / "config.json").write_text(json.dumps(config))
    env.update(
        HOME=str(home),
        NERD_CONFIG_FILE=str(home / "config.json"),
        NERD_SESSION_FILE=str(home / "session.json"),
        **extra,
    )
    return env


def stop_started_workers(home: Path) -> None:
    pids = [int(p.stem) for p in (home / ".nerd" / "workers").glob("*.json")]
    running = [pid for pid in pids if is_worker(pid)]
    for pid in running:
        os.kill(pid, 15)
    wait_until(lambda: not any(map(is_worker, running)), timeout_s=30)


def is_worker(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return (
            stat != "Z" and b"nerd.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"still not true after {timeout_s}s")
