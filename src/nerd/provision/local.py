"""Workers as background processes on this host (``nerd worker start``).

Each worker is ``python -m nerd.worker QUEUE``, in a session of its own so that it
outlives the command that started it. It gets a project worker token pair of its own
in ``NERD_JWT`` / ``NERD_JWT_REFRESH_TOKEN`` (never the user's own session, never
another worker's) and the config in ``NERD_CONFIG_JSON``. Its output goes to
``~/.nerd/workers/<pid>.log``, and ``~/.nerd/workers/<pid>.json`` records what it was
started for, so that ``nerd worker stop`` and ``nerd worker logs`` can find it again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nerd import config as nerd_config
from nerd import errors
from nerd.client import Client
from nerd.ids import check_id
from nerd.models import TokenPair, Worker, WorkerStatus

log = logging.getLogger(__name__)

WORKER_MODULE = "nerd.worker"

# The workers this process started. Holding on to them keeps Popen from warning that
# they still run when it is collected, and lets us reap the ones that ended.
_launched: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LocalWorker:
    """A worker process this host started, from its record in the workers folder."""

    pid: int
    queue: str
    endpoint: str
    project: str
    started_at: str
    log_path: Path
    is_running: bool


def workers_dir() -> Path:
    """Where worker logs and records live: ``~/.nerd/workers``."""
    return nerd_config.nerd_home() / "workers"


def start_workers(
    client: Client,
    queue: str,
    count: int,
    *,
    config: nerd_config.Config | None = None,
    worker_args: list[str] | None = None,
) -> list[int]:
    """Start ``count`` background workers on ``queue``; their process ids.

    ``config`` is the config the caller uses (loaded from the environment if not
    given); ``worker_args`` are extra ``python -m nerd.worker`` options, such as
    ``["--idle-exit-s", "60"]``.
    """
    if count < 1:
        raise errors.UsageError(f"the worker count must be at least 1, not {count}")
    check_id(queue, "q")
    client.batch.describe_queue(queue)
    worker_config = _worker_config(client, config or nerd_config.load_config())
    argv = [sys.executable, "-m", WORKER_MODULE, *(worker_args or []), queue]
    record = {
        "queue": queue,
        "endpoint": client.api.endpoint,
        "project": client.project,
    }
    # Each worker gets a token pair of its own, so one can be revoked alone.
    pairs = [client.auth.worker_token(client.project) for _ in range(count)]
    return [
        _spawn(argv, _worker_environment(client, pair, worker_config), record)
        for pair in pairs
    ]


def stop_workers(
    client: Client, worker_ids: list[str] | None = None, *, all: bool = False
) -> list[str]:
    """Ask the server to stop workers; each finishes its current task, then exits.

    ``all`` stops every worker of the project that has not signed off, and SIGTERMs
    every worker process this host started for the project that has not registered
    yet (it has no task to finish). The ids of the workers asked to stop.
    """
    if not worker_ids and not all:
        raise errors.UsageError(
            "name the workers to stop", hint="give worker ids (wk-…) or --all"
        )
    targets = _live_workers(client) if all else _described(client, worker_ids or [])
    for worker in targets:
        # Not SIGTERM as well: a signalled worker kills its run after its grace.
        client.batch.stop_worker(worker.id)
        log.info("worker.stop_sent worker=%s pid=%s", worker.id, worker.pid)
    if all:
        _terminate_unregistered(client, {worker.pid for worker in targets})
    return [worker.id for worker in targets]


def worker_log_path(client: Client, worker: str) -> Path:
    """The log file of a worker this host started, by worker id or process id."""
    pid = int(worker) if worker.isdigit() else _pid_of(client, worker)
    path = workers_dir() / f"{pid}.log"
    if not path.is_file():
        raise errors.NotFoundError(
            f"no log for worker {worker} on this host",
            hint="logs exist only for workers started with `nerd worker start`",
        )
    return path


def list_local_workers() -> list[LocalWorker]:
    """The worker processes this host started, running or not, oldest first."""
    records = sorted(workers_dir().glob("*.json"), key=lambda p: p.stat().st_mtime)
    return [worker for path in records if (worker := _read_record(path)) is not None]


def _worker_environment(
    client: Client, pair: TokenPair, worker_config: dict[str, Any]
) -> dict[str, str]:
    env = dict(os.environ)
    env["NERD_JWT"] = pair.access_token
    env["NERD_JWT_REFRESH_TOKEN"] = pair.refresh_token
    env["NERD_CONFIG_JSON"] = json.dumps(worker_config)
    env["NERD_PROJECT"] = client.project
    return env


def _worker_config(client: Client, config: nerd_config.Config) -> dict[str, Any]:
    raw = json.loads(json.dumps(config.raw))
    raw["nerd_api_endpoint"] = client.api.endpoint
    if not isinstance(raw.get("auth"), dict):
        raw["auth"] = {}
    auth = raw["auth"]
    auth["api_endpoint"] = client.auth.api.endpoint
    if not config.auth.public_key:
        # A config with no key has never verified a token from this server; the
        # worker still verifies every token it renews against the key it gets now.
        served = client.auth.public_key()
        auth["public_key"], auth["issuer"] = served.public_key, served.issuer
    return dict(raw)


def _spawn(argv: list[str], env: dict[str, str], record: dict[str, str]) -> int:
    folder = workers_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    starting_log = folder / f".starting-{uuid.uuid4().hex}.log"
    # A worker's log can hold what its tasks printed: only the owner reads it.
    log_fd = os.open(starting_log, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    with os.fdopen(log_fd, "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _launched[process.pid] = process
    log_path = starting_log.rename(folder / f"{process.pid}.log")
    _write_record(process.pid, record, log_path)
    log.info("worker.launched pid=%s queue=%s", process.pid, record["queue"])
    return process.pid


def _write_record(pid: int, record: dict[str, str], log_path: Path) -> None:
    document = {
        **record,
        "pid": pid,
        "host": socket.gethostname(),
        "started_at": datetime.now(UTC).isoformat(),
        "log": str(log_path),
    }
    nerd_config.write_json_atomic(workers_dir() / f"{pid}.json", document, mode=0o600)


def _read_record(path: Path) -> LocalWorker | None:
    try:
        document = json.loads(path.read_text())
        pid = int(document["pid"])
        return LocalWorker(
            pid=pid,
            queue=str(document["queue"]),
            endpoint=str(document["endpoint"]),
            project=str(document.get("project", "")),
            started_at=str(document["started_at"]),
            log_path=Path(document["log"]),
            is_running=is_worker_process(pid),
        )
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("worker.record_unreadable path=%s", path)
        return None


def is_worker_process(pid: int) -> bool:
    """Whether ``pid`` is a live ``nerd.worker`` process (not a zombie, not reused)."""
    launched = _launched.get(pid)
    if launched is not None and launched.poll() is not None:
        del _launched[pid]
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return WORKER_MODULE.encode() in cmdline


def _live_workers(client: Client) -> list[Worker]:
    workers = client.batch.list_workers()
    return [worker for worker in workers if worker.status != WorkerStatus.GONE]


def _described(client: Client, worker_ids: list[str]) -> list[Worker]:
    return [client.batch.describe_worker(check_id(wk, "wk")) for wk in worker_ids]


def _terminate_unregistered(client: Client, registered_pids: set[int]) -> None:
    for worker in list_local_workers():
        is_this_project = (worker.endpoint, worker.project) == (
            client.api.endpoint,
            client.project,
        )
        if is_this_project and worker.is_running and worker.pid not in registered_pids:
            _terminate(worker.pid)


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    log.info("worker.terminated pid=%s", pid)


def _pid_of(client: Client, worker: str) -> int:
    check_id(worker, "wk")
    described = client.batch.describe_worker(worker)
    if described.host != socket.gethostname():
        raise errors.NotFoundError(
            f"worker {worker} runs on {described.host}, not on this host",
            hint=f"its log is in ~/.nerd/workers/{described.pid}.log there",
        )
    return described.pid
