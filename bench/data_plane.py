"""Time the data plane end to end: upload, re-upload and download through a real server.

    .venv/bin/python bench/data_plane.py --small-files 2000 --large-mib 256

Starts ``python -m nerd.server`` on a free port of 127.0.0.1 in a temporary folder,
logs in as its admin, and prints one line per step with its throughput.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

from nerd.client.auth import AuthClient
from nerd.client.data import DataClient
from nerd.client.http import Api

MIB = 1024 * 1024
T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=1000)
    parser.add_argument("--small-bytes", type=int, default=4096)
    parser.add_argument("--large-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nerd-bench-") as folder:
        root = Path(folder)
        source = make_folder(
            root / "source", args.small_files, args.small_bytes, args.large_mib
        )
        total_bytes = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
        with running_server(root / "server") as (endpoint, password):
            run_steps(endpoint, password, source, root, total_bytes)


def make_folder(
    source: Path, small_files: int, small_bytes: int, large_mib: int
) -> Path:
    (source / "small").mkdir(parents=True)
    for index in range(small_files):
        (source / "small" / f"{index:06d}.dat").write_bytes(os.urandom(small_bytes))
    with (source / "large.bin").open("wb") as out:
        for _ in range(large_mib):
            out.write(os.urandom(MIB))
    return source


def run_steps(
    endpoint: str, password: str, source: Path, root: Path, total: int
) -> None:
    token = AuthClient(Api(endpoint)).login("admin", password).access_token
    with Api(endpoint, token=lambda: token) as api:
        data = DataClient(api, "default")
        dataset = timed("upload", total, lambda: data.upload(source))
        timed("re-upload (nothing sent)", total, lambda: data.upload(source))
        timed("download", total, lambda: data.download(dataset.id, root / "copy"))


def timed(step: str, total_bytes: int, action: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = action()
    elapsed_s = time.perf_counter() - started
    rate = total_bytes / MIB / elapsed_s
    size_mib = total_bytes / MIB
    print(f"{step:<28} {elapsed_s:7.2f} s  {rate:8.1f} MiB/s  ({size_mib:.1f} MiB)")
    return result


@contextmanager
def running_server(data_dir: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    command = [sys.executable, "-m", "nerd.server", "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_ready(endpoint)
        yield endpoint, (data_dir / "admin-password").read_text().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_ready(endpoint: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{endpoint}/api/v1/auth/public-key", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server at {endpoint} did not start in {timeout_s} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
