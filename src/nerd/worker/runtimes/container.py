"""What the container runtimes (podman, docker) share: the spec, the run folder, the
task's environment, and telling an out-of-memory kill from any other exit.

A container task sees the staged input dataset at ``/input`` (read-only) and writes
its output to ``/output``; its argv follows the image's entrypoint. Its env is the
workload's, then the task's, then the values of its secret env, then nerd's own
(``NERD_TASK_ID``, ``NERD_INPUT_DIR=/input``, ``NERD_OUTPUT_DIR=/output``). Secret
values never go on a command line or into a file: podman reads them from its own
environment, Docker from the create request on its socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nerd.errors import UsageError
from nerd.models import RegistryAuth
from nerd.worker.runtimes.process import (
    SANDBOX_INPUT,
    SANDBOX_OUTPUT,
    RunPaths,
    RunSpec,
)

# Exit code reported when the image could not be found or pulled: the container
# never started (Docker's own code for "the daemon could not run it").
IMAGE_FAILED_EXIT = 125
OOM_EXIT = 137
CGROUP_ROOT = Path("/sys/fs/cgroup")


class ImageError(UsageError):
    """The task's image is not there and could not be pulled."""

    task_exit_code = IMAGE_FAILED_EXIT


@dataclass(frozen=True)
class ContainerSpec:
    """What only container tasks have: the image, limits and pull credentials."""

    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory_bytes: int | None = None
    registry: RegistryAuth | None = None


def make_run_dir(run_dir: Path, stdin: bytes | None) -> RunPaths:
    """The run folder of a container task: output writable by any container user."""
    paths = RunPaths(run_dir)
    for folder in (paths.work, paths.output, paths.empty_input):
        folder.mkdir(parents=True, exist_ok=True)
    paths.output.chmod(0o777)
    paths.empty_input.chmod(0o555)
    paths.stdin.write_bytes(stdin or b"")
    return paths


def container_env(spec: RunSpec, container: ContainerSpec) -> dict[str, str]:
    """The container's environment, secrets included (see the module docstring)."""
    env = {**container.env, **spec.env, **container.secret_env}
    env["NERD_TASK_ID"] = spec.task_id
    env["NERD_INPUT_DIR"] = SANDBOX_INPUT
    env["NERD_OUTPUT_DIR"] = SANDBOX_OUTPUT
    return env


def input_folder(spec: RunSpec, paths: RunPaths) -> Path:
    return spec.input_dir or paths.empty_input


def is_local_only(image: str) -> bool:
    """Whether no registry serves ``image``: podman names what it builds, imports or
    loads ``localhost/…``, and a registry there would need a port."""
    return image.startswith("localhost/")


def is_missing_image_text(text: str) -> bool:
    """Whether a registry's or engine's error says the image does not exist.

    These are the registry API's MANIFEST_UNKNOWN and NAME_UNKNOWN as podman and
    Docker print them, and the engines' own "no such image"; a registry that cannot
    be reached, or refuses the credentials, says something else.
    """
    lowered = text.lower()
    needles = (
        "manifest unknown",
        "name unknown",
        "repository name not known",
        "no such image",
        "image not known",
    )
    return any(needle in lowered for needle in needles)


def not_here_error(image: str) -> ImageError:
    """The error for a local-only image that this host does not have."""
    return ImageError(
        f"image not found: {image}: it is not on this host (localhost/ images are"
        " built, imported or loaded on the host, never pulled)"
    )


def image_error(image: str, detail: str) -> ImageError:
    """A failed pull: "image not found" if the registry said so, else the reason."""
    detail = " ".join(detail.split())[-500:]
    if is_missing_image_text(detail):
        return ImageError(f"image not found: {image}: {detail}")
    return ImageError(f"pulling image {image} failed: {detail}")


def oom_message(container: ContainerSpec) -> str:
    limit = container.memory_bytes
    where = f" of {limit / 2**20:g} MiB" if limit else ""
    return f"out of memory: the kernel killed the task at its memory limit{where}"


class OomProbe:
    """Counts the OOM kills in a running container's memory cgroup (v1 or v2).

    Engines do not always notice an OOM kill themselves (podman on cgroup v1 says
    ``OOMKilled: false``), so the worker reads the kernel's counter while it waits.
    """

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.kills = 0

    def poll(self) -> int:
        for path in self._candidates():
            count = _oom_kills(path)
            if count is not None:
                self.kills = max(self.kills, count)
                break
        return self.kills

    def _candidates(self) -> list[Path]:
        cid = self.container_id
        v1 = CGROUP_ROOT / "memory"
        names = [
            f"libpod_parent/libpod-{cid}",
            f"machine.slice/libpod-{cid}.scope",
            f"docker/{cid}",
            f"system.slice/docker-{cid}.scope",
        ]
        paths = [v1 / name / "memory.oom_control" for name in names]
        return paths + [CGROUP_ROOT / name / "memory.events" for name in names]


def _oom_kills(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0
