"""One run of one task on a worker: stage, run, heartbeat, upload, report.

The outcome is reported exactly once, unless the run expired (the task was stopped or
its lease lapsed): then the process is killed and nothing is reported, because the
server has already taken the task back.

Exit codes the worker reports for runs that never got to run the command:
:data:`STAGING_FAILED_EXIT` when the input could not be staged and
:data:`COMMAND_NOT_FOUND_EXIT` when the command could not be started.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nerd import config as nerd_config
from nerd import errors
from nerd.client import Client
from nerd.client.batch import BatchClient
from nerd.models import LogStream, ReceivedTask, TaskExecution
from nerd.worker.logs import STDERR_TAIL_BYTES, last_line, tail_text
from nerd.worker.pulse import RunPulse
from nerd.worker.redact import RedactingLogTail, Redactor
from nerd.worker.runtimes.choice import RuntimeChoice
from nerd.worker.runtimes.container import ContainerSpec
from nerd.worker.runtimes.process import (
    COMMAND_NOT_FOUND_EXIT,
    RunningProcess,
    RunSpec,
)
from nerd.worker.staging import remove_tree, stage_dataset

log = logging.getLogger(__name__)

STAGING_FAILED_EXIT = 125
WAIT_TICK_S = 0.25
FINAL_EVENTS = ("task.succeeded", "task.failed", "task.abandoned")

# Asked while the command runs: a reason to kill it now (the worker is shutting
# down and its grace period is over), or None to let it run.
AbortCheck = Callable[[], str | None]


@dataclass(frozen=True)
class RunContext:
    """What a run needs from its worker."""

    client: Client
    worker_id: str
    runtime: RuntimeChoice
    command_template: list[str]
    cache_dir: Path | None
    runs_dir: Path | None
    should_abort: AbortCheck


@dataclass(frozen=True)
class Outcome:
    """How a run ended: an exit code, and why, if it did not end by itself."""

    exit_code: int
    message: str = ""
    is_expired: bool = False


class TaskRun:
    """Carries one received task from its input to its reported result."""

    def __init__(self, context: RunContext, received: ReceivedTask) -> None:
        self.context = context
        self.received = received
        self.task_id = received.task.id
        self.pulse = RunPulse(
            context.client.batch,
            task_id=self.task_id,
            run_token=received.run_token,
            lease_s=received.lease_s,
        )
        self._started = time.monotonic()
        self.execution = TaskExecution()
        self.redactor = Redactor([])

    def execute(self) -> Outcome:
        """Run the task and report how it went; the outcome, for the worker's log."""
        self._log("task.started")
        self.pulse.start()
        run_dir = Path(tempfile.mkdtemp(prefix=f"nerd-{self.task_id}-", dir=self._runs))
        try:
            outcome = self._run_in(run_dir)
        finally:
            self.pulse.finish()
            remove_tree(run_dir)
        return outcome

    @property
    def _runs(self) -> Path:
        # In ~/.nerd, which tasks do not see: only a run's own output, work folder
        # and stdin are bound back in, so no task can read another's, or swap its
        # logs for a link to a secret the worker would then ship.
        runs_dir = self.context.runs_dir or nerd_config.nerd_home() / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        return runs_dir

    def _run_in(self, run_dir: Path) -> Outcome:
        try:
            input_dir = self._stage_input()
        except errors.NerdError as exc:
            message = f"staging the input dataset failed: {exc.message}"
            return self._report_failure(Outcome(STAGING_FAILED_EXIT, message))
        try:
            is_live = not self.pulse.expired.is_set() and self._fetch_execution()
        except errors.NerdError as exc:
            message = f"asking how to run the task failed: {exc.message}"
            return self._report_failure(Outcome(STAGING_FAILED_EXIT, message))
        if not is_live:
            self._log("task.abandoned")
            return Outcome(0, "the run expired", is_expired=True)
        try:
            process = self._start(self._spec(input_dir), run_dir)
        except errors.UsageError as exc:
            code = getattr(exc, "task_exit_code", COMMAND_NOT_FOUND_EXIT)
            return self._report_failure(Outcome(code, self.redactor(exc.message)))
        try:
            self._log("task.running", pid=process.pid)
            return self._finish(process, self._wait(process))
        finally:
            _close(process)

    def _fetch_execution(self) -> bool:
        """Ask how to run the task (image, limits, secrets); False if the run ended."""
        try:
            self.execution = self.context.client.workloads.execution(
                self.task_id, self.received.run_token
            )
        except (errors.RunExpiredError, errors.NotFoundError):
            return False
        registry = self.execution.registry
        values = list(self.execution.secret_env.values())
        self.redactor = Redactor(values + ([registry.password] if registry else []))
        return True

    def _start(self, spec: RunSpec, run_dir: Path) -> RunningProcess:
        image = self.execution.image
        self.context.runtime.check_task(image)
        if image is None:
            return self.context.runtime.process.start(spec, run_dir)
        container = ContainerSpec(
            image=image,
            env=self.execution.env,
            secret_env=self.execution.secret_env,
            cpus=self.execution.cpus,
            memory_bytes=self.execution.memory_bytes,
            registry=self.execution.registry,
        )
        runtime = self.context.runtime.container()
        started: RunningProcess = runtime.start(spec, run_dir, container)  # type: ignore[assignment]
        return started

    def _stage_input(self) -> Path | None:
        dataset_id = self.received.input_dataset
        if dataset_id is None:
            return None
        return stage_dataset(
            self.context.client.data, dataset_id, cache_dir=self._cache
        )

    @property
    def _cache(self) -> Path | None:
        return self.context.cache_dir

    def _spec(self, input_dir: Path | None) -> RunSpec:
        task = self.received.task
        stdin_b64 = self.received.stdin_b64
        env = {**self.execution.env, **task.env, **self.execution.secret_env}
        if self.execution.image is not None:
            env = dict(task.env)  # the container runtime adds the rest itself
        return RunSpec(
            task_id=task.id,
            argv=[*self.context.command_template, *task.argv],
            env=env,
            stdin=base64.b64decode(stdin_b64) if stdin_b64 else None,
            input_dir=input_dir,
        )

    def _wait(self, process: RunningProcess) -> Outcome:
        paths = process.paths
        self.pulse.follow(
            RedactingLogTail(paths.stdout_log, LogStream.STDOUT, self.redactor),
            RedactingLogTail(paths.stderr_log, LogStream.STDERR, self.redactor),
        )
        timeout_s = self.execution.timeout_s
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while (exit_code := process.wait(WAIT_TICK_S)) is None:
            if self.pulse.expired.is_set():
                return Outcome(process.kill(), "the run expired", is_expired=True)
            reason = self.context.should_abort()
            if deadline is not None and time.monotonic() >= deadline:
                reason = f"timed out after {timeout_s:g}s: the task was killed"
            if reason is not None:
                return Outcome(process.kill(), reason)
        explain = getattr(process, "explain", None)
        why = explain(exit_code) if explain is not None and exit_code != 0 else None
        return Outcome(exit_code, why or "")

    def _finish(self, process: RunningProcess, outcome: Outcome) -> Outcome:
        if not outcome.is_expired:
            self.pulse.flush_logs()
        if outcome.is_expired or self.pulse.expired.is_set():
            self._log("task.abandoned", exit_code=outcome.exit_code)
            return Outcome(outcome.exit_code, outcome.message, is_expired=True)
        if outcome.exit_code == 0 and not outcome.message:
            return self._report_success(process)
        tail = tail_text(process.paths.stderr_log, STDERR_TAIL_BYTES)
        message = f"{outcome.message}\n{tail}" if outcome.message else tail
        message = self.redactor(message)
        return self._report_failure(Outcome(outcome.exit_code, message))

    def _report_success(self, process: RunningProcess) -> Outcome:
        try:
            dataset_id = self._upload_output(process.paths.output)
        except errors.NerdError as exc:
            message = f"uploading the output failed: {exc.message}"
            return self._report_failure(Outcome(0, message))
        result = self.redactor(last_line(process.paths.stdout_log))
        outcome = self._report(
            lambda token: self._batch.succeed(self.task_id, token, result, dataset_id),
            Outcome(0),
            "task.succeeded",
            output_dataset=dataset_id,
        )
        if outcome.is_expired:
            self._discard_output(dataset_id)
        return outcome

    def _discard_output(self, dataset_id: str) -> None:
        """Delete an output no task will own (the server may have done so already)."""
        with contextlib.suppress(errors.NerdError):
            self.context.client.data.delete(dataset_id)

    def _upload_output(self, output_dir: Path) -> str:
        data = self.context.client.data
        dataset = data.create(f"output of {self.task_id}")
        return data.upload(output_dir, dataset=dataset.id).id

    def _report_failure(self, outcome: Outcome) -> Outcome:
        return self._report(
            lambda token: self._batch.fail(
                self.task_id, token, outcome.exit_code, outcome.message
            ),
            outcome,
            "task.failed",
            exit_code=outcome.exit_code,
        )

    def _report(
        self,
        send: Callable[[str], object],
        outcome: Outcome,
        event: str,
        **fields: object,
    ) -> Outcome:
        try:
            send(self.received.run_token)
        except (errors.RunExpiredError, errors.NotFoundError):
            # Not found: the task was deleted with its queue while it ran.
            self._log("task.abandoned", exit_code=outcome.exit_code)
            return Outcome(outcome.exit_code, outcome.message, is_expired=True)
        self._log(event, **fields)
        return outcome

    @property
    def _batch(self) -> BatchClient:
        return self.context.client.batch

    def _log(self, event: str, **fields: object) -> None:
        if event in FINAL_EVENTS:
            fields = {"duration_s": f"{time.monotonic() - self._started:.1f}", **fields}
        extra = "".join(f" {key}={value}" for key, value in fields.items())
        log.info(
            "%s task=%s run=%s worker=%s%s",
            event,
            self.task_id,
            self.received.run,
            self.context.worker_id,
            extra,
        )


def _close(process: RunningProcess) -> None:
    """Let a container runtime remove what it made for the run."""
    close = getattr(process, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # cleaning up must not hide the run's own outcome
            log.exception("run.cleanup_failed")
