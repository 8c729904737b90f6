"""Runtimes: how a worker runs one task's command.

- ``process``: on the host (under bubblewrap when it is there);
- ``podman``: the workload's image, with the podman command;
- ``docker``: the workload's image, through the Docker Engine API on a unix socket.

Container runtimes take a :class:`ContainerSpec` besides the :class:`RunSpec`.
"""

from nerd.worker.runtimes.container import ContainerSpec, ImageError
from nerd.worker.runtimes.process import ProcessRuntime, RunningProcess, RunSpec

__all__ = ["ContainerSpec", "ImageError", "ProcessRuntime", "RunSpec", "RunningProcess"]
