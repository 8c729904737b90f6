"""Runtimes: how a worker runs one task's command (only ``process`` so far)."""

from nerd.worker.runtimes.process import ProcessRuntime, RunningProcess, RunSpec

__all__ = ["ProcessRuntime", "RunSpec", "RunningProcess"]
