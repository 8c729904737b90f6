"""The nerd CLI logged in to a test server, for the data plane's CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers import RunningServer


@dataclass
class Done:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class NerdCli:
    """``nerd`` as a subprocess with its own HOME, logged in as the admin."""

    home: Path
    server: RunningServer

    def __call__(self, *args: str, timeout_s: float = 120) -> Done:
        done = subprocess.run(
            [sys.executable, "-m", "nerd.cli.main", *args],
            capture_output=True,
            timeout=timeout_s,
            env=self.env(),
        )
        return Done(done.returncode, done.stdout.decode(), done.stderr.decode())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NERD_")}
        return {**env, "HOME": str(self.home)}

    def upload(self, folder: Path, *args: str) -> str:
        done = self("--output", "json", "upload", str(folder), *args)
        assert done.exit_code == 0, done.stderr
        dataset_id: str = json.loads(done.stdout)["id"]
        return dataset_id


def logged_in_cli(home: Path, server: RunningServer) -> NerdCli:
    (home / ".nerd").mkdir(parents=True, exist_ok=True)
    config = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (home / ".nerd" / "config.json").write_text(json.dumps(config))
    cli = NerdCli(home, server)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nerd.cli.main",
            "login",
            "-u",
            "admin",
            "--password-stdin",
        ],
        input=server.admin_password.encode(),
        capture_output=True,
        env=cli.env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return cli


def listing(root: Path) -> list[tuple[str, str, int, int]]:
    """Every path under ``root`` with its kind, permission bits and mtime."""
    rows = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            mtime = 0 if kind == "dir" and path == root else info.st_mtime_ns
            rows.append((str(path.relative_to(root)), kind, info.st_mode, mtime))
    return sorted(rows)


def diff_r(a: Path, b: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)])


def stored_packs(server: RunningServer) -> list[Path]:
    return [p for p in (server.data_dir / "objects").rglob("*") if "packs" in p.parts]
