"""A parameter sweep over the UCI handwritten digits, run end to end through ``nerd``.

Everything goes through the real ``nerd`` command line, as a user would type it:

1. start an embedded server (``nerd server``) on a free port, with its data in the
   work folder, and log in as its admin;
2. export scikit-learn's bundled digits (no download) to ``digits.csv`` and upload the
   folder as a dataset;
3. create a queue with that input, start one task per (gamma, C) of an SVC grid, and
   start local workers (``nerd worker start --count 2``);
4. wait for the tasks, download every output, print the results best first and how
   long each phase took; stop the workers and the server.

    python examples/digits_sweep/run.py [--work-dir DIR] [--workers 2]

The work folder (a fresh temporary one unless given) holds the server's data, the
config and session, ``HOME`` for the workers, the exported digits and the outputs, so
nothing outside it is touched; running again in the same folder reuses the server's
data, and the unchanged digits upload sends only the manifest. Exits 1 if any task
failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train.py"
GAMMAS = [0.0001, 0.0003, 0.001, 0.003]
CS = [1.0, 10.0]
TERMINAL = {"SUCCESS", "FAILED", "STOPPED"}
SERVER_READY_TIMEOUT_S = 60.0
WORKER_EXIT_TIMEOUT_S = 30.0
POLL_S = 0.5
CLEARED_ENV = ("NERD_JWT", "NERD_JWT_REFRESH_TOKEN", "NERD_CONFIG_JSON", "CONFIG")
CLEARED_ENV_MORE = ("NERD_PROJECT", "NERD_OUTPUT", "NERD_DEBUG")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the digits SVC sweep on nerd.")
    parser.add_argument("--work-dir", type=Path, help="default: a new temporary one")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    return parser.parse_args(argv)


def nerd_command() -> list[str]:
    """The ``nerd`` script of this Python, so the example runs the nerd it sits in."""
    script = Path(sys.executable).parent / "nerd"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from nerd.cli.main import main; main()"]


@dataclass
class Nerd:
    """Runs ``nerd`` subcommands with the example's own config, session and HOME."""

    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run one command; its stdout. Its stderr passes through to ours."""
        completed = subprocess.run(
            [*nerd_command(), *args],
            input=stdin,
            stdout=subprocess.PIPE,
            env=self.env,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise SystemExit(f"`nerd {' '.join(args)}` exited {completed.returncode}")
        return completed.stdout

    def json(self, *args: str) -> Any:
        """Run one command with ``--output json``; its JSON document."""
        split = args.index("--") if "--" in args else len(args)
        return json.loads(self.run(*args[:split], "--output", "json", *args[split:]))


def isolated_env(work: Path, endpoint: str) -> dict[str, str]:
    """The environment for every ``nerd`` call: this example's files only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED_ENV and k not in CLEARED_ENV_MORE
    }
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    config = {"nerd_api_endpoint": endpoint, "auth": {"api_endpoint": endpoint}}
    (work / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    env.update(
        HOME=str(home),
        NERD_CONFIG_FILE=str(work / "config.json"),
        NERD_SESSION_FILE=str(work / "session.json"),
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(work: Path, env: dict[str, str], port: int) -> Iterator[str]:
    """``nerd server`` in the background; its endpoint once it answers."""
    data_dir = work / "server"
    argv = [*nerd_command(), "server", "--data-dir", str(data_dir), "--port", str(port)]
    # In the data folder, which tasks do not see: the first start logs the admin
    # password.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (data_dir / "server.log").open("ab") as server_log:
        server = subprocess.Popen(argv, env=env, stdout=server_log, stderr=server_log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(endpoint, server)
        yield endpoint
    finally:
        stop_process(server)


def wait_until_ready(endpoint: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(
                f"the server exited {server.returncode}: see server/server.log"
            )
        try:
            with urllib.request.urlopen(
                f"{endpoint}/api/v1/auth/public-key", timeout=2
            ):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer within {SERVER_READY_TIMEOUT_S:g}s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def export_digits(folder: Path) -> Path:
    """scikit-learn's copy of the UCI digits as ``digits.csv`` and a README."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    header = ",".join([*(f"pixel{i}" for i in range(64)), "label"])
    rows = (
        ",".join([*(f"{value:g}" for value in image), str(label)])
        for image, label in zip(digits.data, digits.target, strict=True)
    )
    write_if_changed(folder / "digits.csv", "\n".join([header, *rows]) + "\n")
    write_if_changed(folder / "README.md", digits.DESCR)
    return folder


def write_if_changed(path: Path, text: str) -> None:
    # An untouched file keeps its mtime, so a second upload is the same manifest.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def start_sweep(nerd: Nerd, queue_id: str) -> list[str]:
    """One task per (gamma, C); their ids."""
    task_ids = []
    for gamma, c in itertools.product(GAMMAS, CS):
        argv = [sys.executable, str(TRAIN), "--gamma", f"{gamma:g}", "--C", f"{c:g}"]
        task = nerd.json("task", "start", queue_id, "--", *argv)
        task_ids.append(task["id"])
    return task_ids


def wait_for_tasks(nerd: Nerd, queue_id: str, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tasks: list[dict[str, Any]] = nerd.json("task", "list", queue_id)
        if all(task["status"] in TERMINAL for task in tasks):
            return tasks
        time.sleep(POLL_S)
    raise SystemExit(f"the tasks did not finish within {timeout_s:g}s")


def stop_workers(nerd: Nerd, pids: list[int]) -> None:
    """Ask the workers to stop, wait for them, and SIGTERM any that linger."""
    nerd.run("worker", "stop", "--all")
    deadline = time.monotonic() + WORKER_EXIT_TIMEOUT_S
    while time.monotonic() < deadline and any(map(is_running, pids)):
        time.sleep(POLL_S)
    for pid in filter(is_running, pids):
        os.kill(pid, signal.SIGTERM)


def is_running(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"nerd.worker" in cmdline


def read_results(outputs: Path) -> list[dict[str, Any]]:
    metrics = [json.loads(p.read_text()) for p in outputs.rglob("metrics.json")]
    return sorted(metrics, key=lambda m: m["accuracy"], reverse=True)


def print_results(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'rank':>4}  {'gamma':>8}  {'C':>5}  {'accuracy':>14}  {'train_s':>7}  task"
    )
    for rank, m in enumerate(results, 1):
        accuracy = f"{m['accuracy']:.4f} ± {m['accuracy_std']:.4f}"
        print(
            f"{rank:>4}  {m['gamma']:>8g}  {m['C']:>5g}  {accuracy:>14}  "
            f"{m['train_s']:>7.2f}  {m['task']}"
        )


def print_failures(tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        if task["status"] != "SUCCESS":
            message = (task.get("message") or "").strip().splitlines()[-1:]
            print(
                f"{task['id']} {task['status']}: {' '.join(message)}", file=sys.stderr
            )


def human_bytes(size_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size_bytes < 1024:
            return f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024
    return f"{size_bytes:.1f} GiB"


def print_timings(timings: dict[str, float], sizes: dict[str, int]) -> None:
    print()
    for phase in ("upload", "download"):
        size_bytes, took_s = sizes[phase], timings[phase]
        rate = size_bytes / took_s if took_s > 0 else 0.0
        print(
            f"{phase:<9} {human_bytes(size_bytes):>10} in {took_s:6.2f} s  "
            f"({human_bytes(rate)}/s, with the CLI's start)"
        )
    print(
        f"{'sweep':<9} {timings['sweep']:6.2f} s wall time for {sizes['tasks']} tasks"
    )


def timed(action: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action(*args)
    return result, time.perf_counter() - started


def run_sweep(
    nerd: Nerd, work: Path, data_dir: Path, workers: int, timeout_s: float
) -> int:
    password = (data_dir / "admin-password").read_text().strip()
    nerd.run("login", "--username", "admin", "--password-stdin", stdin=password + "\n")

    digits = export_digits(work / "digits")
    dataset, upload_s = timed(nerd.json, "upload", str(digits))
    queue = nerd.json("queue", "create", "--input-dataset", dataset["id"])
    task_ids = start_sweep(nerd, queue["id"])
    print(f"queue {queue['id']}: {len(task_ids)} tasks, input {dataset['id']}")

    started = time.perf_counter()
    pids = nerd.json("worker", "start", "--count", str(workers), queue["id"])["pids"]
    try:
        tasks = wait_for_tasks(nerd, queue["id"], timeout_s)
        sweep_s = time.perf_counter() - started
    finally:
        stop_workers(nerd, pids)

    outputs = work / "outputs" / queue["id"]
    _, download_s = timed(nerd.run, "download", queue["id"], str(outputs))
    print_results(read_results(outputs))
    print_timings(
        {"upload": upload_s, "sweep": sweep_s, "download": download_s},
        {
            "upload": folder_size_bytes(digits),
            "download": folder_size_bytes(outputs),
            "tasks": len(tasks),
        },
    )
    print_failures(tasks)
    return 0 if all(task["status"] == "SUCCESS" for task in tasks) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.workers < 2:
        raise SystemExit("--workers must be at least 2")
    is_temporary = args.work_dir is None
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="nerd-digits-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}")
    port = free_port()
    env = isolated_env(work, f"http://127.0.0.1:{port}")
    try:
        with running_server(work, env, port):
            return run_sweep(
                Nerd(env), work, work / "server", args.workers, args.timeout_s
            )
    finally:
        if is_temporary:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
