"""Which runtime runs a task: the worker's ``--runtime``, or ``auto``.

``auto`` runs a task with no image as a process, and a task with an image under
podman when it is on the PATH, else through the Docker socket. ``process`` runs only
tasks without an image; ``podman`` and ``docker`` only tasks with one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from nerd.errors import UsageError
from nerd.worker.runtimes.process import ProcessRuntime

if TYPE_CHECKING:
    from nerd.worker.runtimes.docker import DockerRuntime
    from nerd.worker.runtimes.podman import PodmanRuntime

RUNTIMES = ("auto", "process", "podman", "docker")


class RuntimeChoice:
    """The runtimes one worker may use, made when first needed."""

    def __init__(self, name: str = "auto") -> None:
        if name not in RUNTIMES:
            raise UsageError(
                f"the runtime '{name}' is not supported",
                hint=f"use one of: {', '.join(RUNTIMES)}",
            )
        self.name = name
        self.process = ProcessRuntime()
        self._container: PodmanRuntime | DockerRuntime | None = None
        if name in ("podman", "docker"):
            self.container()  # fail at start, not at the first task

    @property
    def sandbox(self) -> str:
        return "bwrap" if self.process.bwrap else "none"

    def container(self) -> PodmanRuntime | DockerRuntime:
        """The container runtime; UsageError if this worker has none."""
        if self._container is None:
            self._container = self._make_container()
        return self._container

    def check_task(self, image: str | None) -> None:
        """UsageError if this worker cannot run a task with (or without) an image."""
        if image is None and self.name in ("podman", "docker"):
            raise UsageError(f"a {self.name} worker runs only tasks with an image")
        if image is not None and self.name == "process":
            raise UsageError(
                f"this worker runs processes; the task needs the image {image}",
                hint="start the worker with --runtime podman|docker|auto",
            )

    def _make_container(self) -> PodmanRuntime | DockerRuntime:
        from nerd.worker.runtimes.docker import DockerRuntime, docker_socket
        from nerd.worker.runtimes.podman import PodmanRuntime

        if self.name == "podman" or (self.name == "auto" and shutil.which("podman")):
            return PodmanRuntime()
        if self.name == "docker" or Path(docker_socket()).exists():
            return DockerRuntime()
        raise UsageError(
            "this worker has no container runtime",
            hint="install podman, or start Docker",
        )
