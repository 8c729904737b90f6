"""The ``podman`` runtime: each task is ``podman run`` of the workload's image.

The container is named ``nerd-<task>-<random>`` and kept after it exits only long
enough to ask podman whether the kernel killed it for memory; then it is removed.
Podman's own settings (OCI runtime, cgroup manager, default ulimits) come from
``containers.conf``, or the file ``CONTAINERS_CONF`` names.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from nerd.errors import UsageError
from nerd.models import RegistryAuth
from nerd.worker.runtimes.container import (
    ContainerSpec,
    OomProbe,
    container_env,
    image_error,
    input_folder,
    is_local_only,
    make_run_dir,
    not_here_error,
    oom_message,
)
from nerd.worker.runtimes.process import (
    SANDBOX_INPUT,
    SANDBOX_OUTPUT,
    SECRET_ENV,
    RunningProcess,
    RunPaths,
    RunSpec,
)

log = logging.getLogger(__name__)

PULL_TIMEOUT_S = 600.0
INSPECT_TIMEOUT_S = 30.0
# What conmon creates in its working folder when the kernel OOM-kills a container.
CONMON_OOM_FILE = "oom"


class PodmanRuntime:
    """Runs tasks as podman containers."""

    name = "podman"

    def __init__(self, *, podman: str = "podman", kill_grace_s: float = 5.0) -> None:
        found = shutil.which(podman)
        if found is None:
            raise UsageError(f"{podman} is not on the PATH", hint="install podman")
        self.podman = found
        self.kill_grace_s = kill_grace_s

    def start(
        self, spec: RunSpec, run_dir: Path, container: ContainerSpec
    ) -> RunningContainer:
        """Pull the image if need be and start the container."""
        paths = make_run_dir(run_dir, spec.stdin)
        self.ensure_image(container.image, container.registry, run_dir)
        name = f"nerd-{spec.task_id}-{secrets.token_hex(4)}"
        env = container_env(spec, container)
        argv = self._run_argv(name, spec, container, paths, env)
        popen = _spawn(argv, env, paths)
        log.debug("container started task=%s name=%s", spec.task_id, name)
        return RunningContainer(self, popen, paths, name, container)

    def ensure_image(
        self, image: str, registry: RegistryAuth | None, run_dir: Path
    ) -> None:
        """Pull ``image`` unless it is here; ImageError if that fails."""
        if self._run(["image", "exists", image]).returncode == 0:
            return
        if is_local_only(image):
            raise not_here_error(image)
        auth_file = _auth_file(registry, run_dir) if registry is not None else None
        args = ["pull", "--quiet"]
        args += ["--authfile", str(auth_file)] if auth_file else []
        log.info("image.pulling image=%s", image)
        try:
            pulled = self._run([*args, image], timeout_s=PULL_TIMEOUT_S)
        finally:
            if auth_file is not None:
                auth_file.unlink(missing_ok=True)
        if pulled.returncode != 0:
            raise image_error(image, _last_error(pulled.stderr))

    def remove(self, name: str) -> None:
        self._run(["rm", "--force", "--time", f"{self.kill_grace_s:g}", name])

    def inspect_oom(self, name: str) -> bool:
        done = self._run(["inspect", "--format", "{{.State.OOMKilled}}", name])
        return done.stdout.strip() == "true"

    def _run_argv(
        self,
        name: str,
        spec: RunSpec,
        container: ContainerSpec,
        paths: RunPaths,
        env: dict[str, str],
    ) -> list[str]:
        argv = [self.podman, "run", "--name", name, "--pull", "never"]
        argv += ["--cidfile", str(paths.root / "cid")]
        argv += ["--label", f"nerd.task={spec.task_id}"]
        argv += ["-v", f"{input_folder(spec, paths)}:{SANDBOX_INPUT}:ro"]
        argv += ["-v", f"{paths.output}:{SANDBOX_OUTPUT}:rw"]
        for key in env:
            argv += ["--env", key]  # the value comes from podman's environment
        argv += _limits(container)
        argv += ["-i"] if spec.stdin else []
        return [*argv, container.image, *spec.argv]

    def _run(
        self, args: list[str], *, timeout_s: float = INSPECT_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.podman, *args],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(args, 1, "", f"timed out: {exc}")


class RunningContainer(RunningProcess):
    """A started ``podman run``: its exit code, a kill, and why it ended."""

    def __init__(
        self,
        runtime: PodmanRuntime,
        popen: subprocess.Popen[bytes],
        paths: RunPaths,
        name: str,
        container: ContainerSpec,
    ) -> None:
        super().__init__(popen, paths, kill_grace_s=runtime.kill_grace_s)
        self.runtime = runtime
        self.name = name
        self.container = container
        self._probe: OomProbe | None = None

    def wait(self, timeout_s: float | None = None) -> int | None:
        self._poll_oom()
        return super().wait(timeout_s)

    def kill(self) -> int:
        self.runtime.remove(self.name)
        return super().kill()

    def explain(self, exit_code: int) -> str | None:
        """Why the container ended, when it was not the command's own doing."""
        self._poll_oom()
        is_oom = (
            self.runtime.inspect_oom(self.name)
            or bool(self._probe and self._probe.kills)
            or self._has_oom_marker()
        )
        if exit_code != 0 and is_oom:
            return oom_message(self.container)
        return None

    def _has_oom_marker(self) -> bool:
        """Whether conmon left its ``oom`` file in the folder ``podman run`` ran in.

        conmon writes it when the kernel OOM-kills the container, also on cgroup v1
        where ``inspect`` says ``OOMKilled: false`` and where the container's cgroup,
        with its counter, is gone once a quickly killed task has ended. The folder is
        the run's own and not mounted into the container, so a task cannot fake it.
        """
        return (self.paths.work / CONMON_OOM_FILE).exists()

    def close(self) -> None:
        """Remove the container."""
        self.runtime.remove(self.name)

    def _poll_oom(self) -> None:
        if self._probe is None:
            cid = _read_cid(self.paths.root / "cid")
            self._probe = OomProbe(cid) if cid else None
        if self._probe is not None:
            self._probe.poll()


def _limits(container: ContainerSpec) -> list[str]:
    args: list[str] = []
    if container.memory_bytes is not None:
        memory = str(container.memory_bytes)
        args += ["--memory", memory, "--memory-swap", memory]
    if container.cpus is not None:
        args += ["--cpus", f"{container.cpus:g}"]
    return args


def _auth_file(registry: RegistryAuth, run_dir: Path) -> Path:
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode())
    path = run_dir / "auth.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"auths": {registry.server: {"auth": token.decode()}}}, file)
    return path


def _last_error(stderr: str) -> str:
    """podman's final ``Error: …`` line, without the retry warnings before it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    return (errors or lines or ["podman pull failed"])[-1].removeprefix("Error: ")


def _own_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SECRET_ENV}


def _read_cid(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _spawn(
    argv: list[str], env: dict[str, str], paths: RunPaths
) -> subprocess.Popen[bytes]:
    with (
        paths.stdin.open("rb") as stdin,
        paths.stdout_log.open("wb") as stdout,
        paths.stderr_log.open("wb") as stderr,
    ):
        try:
            return subprocess.Popen(
                argv,
                cwd=paths.work,
                env={**_own_environment(), **env},
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise UsageError(f"cannot start {argv[0]}: {exc.strerror}") from exc
