"""The worker: register, then receive and run tasks one at a time until told to stop.

Stopping, and what happens to the run in progress:

- ``nerd worker stop`` (the server's heartbeat reply says ``stop_requested``): no new
  work; the current run finishes however long it takes; then the worker signs off.
- SIGTERM or SIGINT: no new work; the current run gets ``shutdown_grace_s`` to finish.
  After that (or at a second signal) its process group is killed and the run is
  reported as failed, which gives the task back to the queue while it has attempts
  left. Then the worker signs off and exits 0.
- ``idle_exit_s``: the worker exits when no task came for that long; ``once``: after
  one run.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from nerd import errors
from nerd.client import Client
from nerd.models import ReceivedTask, Worker
from nerd.worker.pulse import WorkerPulse
from nerd.worker.runs import RunContext, TaskRun
from nerd.worker.runtimes.choice import RuntimeChoice

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = 2.0


@dataclass
class WorkerOptions:
    """How a worker behaves; the defaults suit ``nerd worker work``."""

    command_template: list[str] = field(default_factory=list)
    is_once: bool = False
    idle_exit_s: float | None = None
    runtime: str = "auto"
    receive_wait_s: float = 5.0
    shutdown_grace_s: float = 30.0
    worker_heartbeat_s: float = 5.0
    cache_dir: Path | None = None
    runs_dir: Path | None = None


def run_worker(
    client: Client,
    queue: str,
    *,
    command_template: list[str] | None = None,
    once: bool = False,
    idle_exit_s: float | None = None,
    runtime: str = "auto",
    shutdown_grace_s: float = 30.0,
    receive_wait_s: float = 5.0,
) -> int:
    """Work on ``queue`` until stopped; the process exit code (0 after a clean stop)."""
    options = WorkerOptions(
        command_template=list(command_template or []),
        is_once=once,
        idle_exit_s=idle_exit_s,
        runtime=runtime,
        receive_wait_s=receive_wait_s,
        shutdown_grace_s=shutdown_grace_s,
    )
    return WorkerLoop(client, queue, options).run()


class Shutdown:
    """What signals asked of the worker: stop taking work, and when; kill now."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.requested = threading.Event()
        self.requested_at = 0.0
        self.is_urgent = False

    def request(self) -> None:
        if self.requested.is_set():
            self.is_urgent = True
            return
        self.requested_at = time.monotonic()
        self.requested.set()

    def abort_reason(self) -> str | None:
        """Why the current run must be killed now, or None."""
        if not self.requested.is_set():
            return None
        if self.is_urgent:
            return "the worker was stopped a second time: the run was killed"
        if time.monotonic() - self.requested_at >= self.grace_s:
            return f"the worker was stopped and the run outlasted {self.grace_s:g}s"
        return None


class WorkerLoop:
    """One registered worker on one queue."""

    def __init__(self, client: Client, queue: str, options: WorkerOptions) -> None:
        self.client = client
        self.queue = queue
        self.options = options
        self.runtime = RuntimeChoice(options.runtime)
        self.shutdown = Shutdown(options.shutdown_grace_s)

    def run(self) -> int:
        """Register, serve the queue, sign off."""
        worker = self._register()
        pulse = WorkerPulse(
            self.client.batch, worker.id, interval_s=self.options.worker_heartbeat_s
        )
        pulse.start()
        try:
            with _signals_handled_by(self.shutdown):
                self._serve(worker, pulse)
        finally:
            pulse.finish()
            self._sign_off(worker)
        return 0

    def _register(self) -> Worker:
        worker = self.client.batch.register_worker(
            self.queue, socket.gethostname(), os.getpid(), self.options.runtime
        )
        self.runtime.process.server_paths = [Path(p) for p in worker.private_paths]
        log.info(
            "worker.started worker=%s queue=%s host=%s pid=%s sandbox=%s",
            worker.id,
            self.queue,
            worker.host,
            worker.pid,
            self.runtime.sandbox,
        )
        return worker

    def _serve(self, worker: Worker, pulse: WorkerPulse) -> None:
        context = self._context(worker)
        idle_since = time.monotonic()
        while (reason := self._stop_reason(pulse, idle_since)) is None:
            received = self._receive(worker)
            if received is None:
                continue
            TaskRun(context, received).execute()
            idle_since = time.monotonic()
            if self.options.is_once:
                reason = "once"
                break
        log.info("worker.stopping worker=%s reason=%s", worker.id, reason)

    def _stop_reason(self, pulse: WorkerPulse, idle_since: float) -> str | None:
        if self.shutdown.requested.is_set():
            return "signal"
        if pulse.stop_requested.is_set():
            return "stop_requested"
        idle_exit_s = self.options.idle_exit_s
        if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
            return "idle"
        return None

    def _receive(self, worker: Worker) -> ReceivedTask | None:
        try:
            return self.client.batch.receive(
                self.queue, worker.id, wait_s=self._receive_wait_s()
            )
        except errors.ServerUnreachableError as exc:
            log.warning("worker.receive_failed worker=%s error=%s", worker.id, exc)
            self.shutdown.requested.wait(RETRY_BACKOFF_S)
            return None

    def _receive_wait_s(self) -> float:
        wait_s = self.options.receive_wait_s
        if self.options.idle_exit_s is not None:
            wait_s = min(wait_s, max(self.options.idle_exit_s, 0.0))
        return wait_s

    def _context(self, worker: Worker) -> RunContext:
        return RunContext(
            client=self.client,
            worker_id=worker.id,
            runtime=self.runtime,
            command_template=self.options.command_template,
            cache_dir=self.options.cache_dir,
            runs_dir=self.options.runs_dir,
            should_abort=self.shutdown.abort_reason,
        )

    def _sign_off(self, worker: Worker) -> None:
        try:
            self.client.batch.deregister_worker(worker.id)
        except errors.NerdError as exc:
            log.warning("worker.sign_off_failed worker=%s error=%s", worker.id, exc)
        log.info("worker.stopped worker=%s", worker.id)


@contextmanager
def _signals_handled_by(shutdown: Shutdown) -> Iterator[None]:
    """SIGTERM and SIGINT ask for a shutdown instead of ending the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("worker.signal signal=%s", signal.Signals(signum).name)
        shutdown.request()

    previous = {
        sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
