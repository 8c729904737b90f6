"""The worker's background threads: heartbeats for a run and for the worker itself.

A :class:`RunPulse` keeps one run's lease alive (a heartbeat every third of the lease,
at most 3 s apart, which bounds how long a stopped task runs on) and
ships what the command printed as log appends, about once a second, until the run is
reported (so uploading a large output does not lose the lease). When the server
answers ``run_expired`` (the task was stopped, or the lease was lost) it sets
:attr:`RunPulse.expired` and goes quiet; the thread that owns the process kills it.

A :class:`WorkerPulse` tells the server the worker is alive and notices when someone
asked it to stop (``nerd worker stop``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from nerd import errors
from nerd.models import HeartbeatReply, LogStream, WorkerHeartbeatReply
from nerd.worker.logs import LogTail

log = logging.getLogger(__name__)

LOG_TICK_S = 1.0
MIN_HEARTBEAT_S = 0.5
# Also how soon a stopped task is noticed and killed, so it is kept short.
MAX_HEARTBEAT_S = 3.0


class RunReporter(Protocol):
    """The batch client calls a run's pulse makes."""

    def heartbeat(self, task_id: str, run_token: str) -> HeartbeatReply: ...

    def append_log(
        self, task_id: str, run_token: str, stream: LogStream, data: str
    ) -> None: ...


class WorkerReporter(Protocol):
    def worker_heartbeat(self, worker_id: str) -> WorkerHeartbeatReply: ...


class RunPulse(threading.Thread):
    """Heartbeats one run and ships its logs until :meth:`finish` is called."""

    def __init__(
        self,
        batch: RunReporter,
        *,
        task_id: str,
        run_token: str,
        lease_s: float,
        tick_s: float = LOG_TICK_S,
    ) -> None:
        super().__init__(name=f"pulse-{task_id}", daemon=True)
        self._batch = batch
        self._task_id = task_id
        self._run_token = run_token
        self._interval_s = heartbeat_interval_s(lease_s)
        self._tick_s = min(tick_s, self._interval_s)
        self._tails: list[LogTail] = []
        self._tails_lock = threading.Lock()
        self._done = threading.Event()
        self.expired = threading.Event()

    def follow(self, *tails: LogTail) -> None:
        """Start shipping these logs too."""
        with self._tails_lock:
            self._tails.extend(tails)

    def run(self) -> None:
        next_beat = time.monotonic() + self._interval_s
        while not self._done.wait(self._tick_s) and not self.expired.is_set():
            self._guarded(self._ship_logs)
            if time.monotonic() >= next_beat:
                self._guarded(self._heartbeat)
                next_beat = time.monotonic() + self._interval_s

    def flush_logs(self) -> None:
        """Ship everything the logs still hold, once the command has ended."""
        if not self.expired.is_set():
            self._guarded(self._drain_logs)

    def finish(self) -> None:
        """Stop heartbeating: the run's report follows, or the run is over."""
        self._done.set()
        if self.is_alive():
            self.join()

    def _heartbeat(self) -> None:
        reply = self._batch.heartbeat(self._task_id, self._run_token)
        self._interval_s = heartbeat_interval_s(reply.lease_s)

    def _ship_logs(self) -> None:
        # The lock keeps the thread and flush_logs from reading one tail twice over.
        with self._tails_lock:
            for tail in self._tails:
                text = tail.read_new()
                if text:
                    self._append(tail.stream, text)

    def _drain_logs(self) -> None:
        with self._tails_lock:
            for tail in self._tails:
                for text in tail.drain():
                    self._append(tail.stream, text)

    def _append(self, stream: LogStream, text: str) -> None:
        self._batch.append_log(self._task_id, self._run_token, stream, text)

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except (errors.RunExpiredError, errors.NotFoundError) as exc:
            # Not found: the task was deleted with its queue, and its run with it.
            log.info("run.expired task=%s reason=%s", self._task_id, exc.code)
            self.expired.set()
        except errors.NerdError as exc:
            # A server that restarts or a network blip must not kill the run; the
            # lease gives us lease_s to get through.
            log.warning("run.pulse_failed task=%s error=%s", self._task_id, exc)


class WorkerPulse(threading.Thread):
    """Heartbeats the worker; sets ``stop_requested`` once the server asks for it."""

    def __init__(
        self, batch: WorkerReporter, worker_id: str, *, interval_s: float
    ) -> None:
        super().__init__(name=f"pulse-{worker_id}", daemon=True)
        self._batch = batch
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._done = threading.Event()
        self.stop_requested = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self._interval_s):
            if self.beat():
                return

    def beat(self) -> bool:
        """One heartbeat; True when the server asked the worker to stop."""
        try:
            reply = self._batch.worker_heartbeat(self._worker_id)
        except errors.NerdError as exc:
            log.warning("worker.pulse_failed worker=%s error=%s", self._worker_id, exc)
            return False
        if reply.stop_requested and not self.stop_requested.is_set():
            log.info("worker.stop_requested worker=%s", self._worker_id)
            self.stop_requested.set()
        return reply.stop_requested

    def finish(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()


def heartbeat_interval_s(lease_s: float) -> float:
    """A third of the lease, so two heartbeats may fail before it lapses."""
    return min(MAX_HEARTBEAT_S, max(MIN_HEARTBEAT_S, lease_s / 3))
