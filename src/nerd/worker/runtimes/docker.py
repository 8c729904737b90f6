"""The ``docker`` runtime: the Docker Engine API on a unix socket, spoken with httpx.

The socket is ``DOCKER_HOST`` (``unix://…``) or ``/var/run/docker.sock``; podman's
``podman system service`` serves the same API, which is how the tests run this code.
A task is: pull the image if it is missing (with ``X-Registry-Auth`` from the pull
secret), create the container with ``/input`` bound read-only and ``/output``, start
it, copy its log stream into the run's ``stdout.log`` and ``stderr.log`` as it comes,
wait, inspect (``OOMKilled``), and remove it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from nerd.errors import UsageError
from nerd.models import RegistryAuth
from nerd.worker.runtimes.container import (
    ContainerSpec,
    ImageError,
    OomProbe,
    container_env,
    image_error,
    input_folder,
    make_run_dir,
    oom_message,
)
from nerd.worker.runtimes.process import (
    SANDBOX_INPUT,
    SANDBOX_OUTPUT,
    RunPaths,
    RunSpec,
)

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "v1.41"
PULL_TIMEOUT_S = 600.0
FRAME_HEADER = struct.Struct(">BxxxL")
STREAMS = {1: "stdout", 2: "stderr"}


def docker_socket() -> str:
    """The Docker socket path, from ``DOCKER_HOST`` or the default."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host.removeprefix("unix://")
    if host:
        raise UsageError(f"DOCKER_HOST={host} is not a unix:// socket")
    return DEFAULT_SOCKET


class DockerRuntime:
    """Runs tasks as containers through the Docker Engine API."""

    name = "docker"

    def __init__(self, *, socket: str | None = None, kill_grace_s: float = 5.0) -> None:
        self.socket = socket or docker_socket()
        if not Path(self.socket).exists():
            raise UsageError(
                f"no Docker socket at {self.socket}",
                hint="start Docker, or set DOCKER_HOST=unix://PATH",
            )
        self.kill_grace_s = kill_grace_s
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket),
            base_url=f"http://docker/{API_VERSION}",
            timeout=httpx.Timeout(60.0, connect=10.0),
        )

    def start(
        self, spec: RunSpec, run_dir: Path, container: ContainerSpec
    ) -> RunningDockerContainer:
        paths = make_run_dir(run_dir, spec.stdin)
        self.ensure_image(container.image, container.registry)
        name = f"nerd-{spec.task_id}-{secrets.token_hex(4)}"
        body = _create_body(spec, container, paths)
        created = self._call(
            "POST", "/containers/create", params={"name": name}, json=body
        )
        container_id = str(created.json()["Id"])
        running = RunningDockerContainer(self, container_id, paths, container)
        self._call("POST", f"/containers/{container_id}/start")
        running.follow()
        return running

    def ensure_image(self, image: str, registry: RegistryAuth | None) -> None:
        """Pull ``image`` unless the engine has it; ImageError if that fails."""
        if self.http.get(f"/images/{quote(image, safe='')}/json").status_code == 200:
            return
        headers = {"X-Registry-Auth": _registry_header(registry)} if registry else {}
        log.info("image.pulling image=%s", image)
        try:
            with self.http.stream(
                "POST",
                "/images/create",
                params={"fromImage": image},
                headers=headers,
                timeout=PULL_TIMEOUT_S,
            ) as response:
                body = response.read().decode(errors="replace")
        except httpx.TransportError as exc:
            raise image_error(image, str(exc)) from exc
        problem = _pull_problem(response.status_code, body)
        if problem:
            raise image_error(image, problem)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UsageError(
                f"the Docker engine at {self.socket} failed: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise UsageError(
                f"the Docker engine refused {method} {path}: {_message(response)}"
            )
        return response


class RunningDockerContainer:
    """A started container: exit code, kill, logs copied to files, removal."""

    def __init__(
        self,
        runtime: DockerRuntime,
        container_id: str,
        paths: RunPaths,
        container: ContainerSpec,
    ) -> None:
        self.runtime = runtime
        self.id = container_id
        self.paths = paths
        self.container = container
        self.pid = 0
        self._probe = OomProbe(container_id)
        self._logs = threading.Thread(target=self._copy_logs, daemon=True)
        self._exit_code: int | None = None

    def follow(self) -> None:
        self._logs.start()

    def wait(self, timeout_s: float | None = None) -> int | None:
        deadline = time.monotonic() + (timeout_s or 0)
        while True:
            self._probe.poll()
            state = self._state()
            if not state.get("Running", False) and state.get("Status") != "created":
                return self._finish(int(state.get("ExitCode", 1)))
            if timeout_s is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def kill(self) -> int:
        self.runtime.http.post(
            f"/containers/{self.id}/stop", params={"t": int(self.runtime.kill_grace_s)}
        )
        code = self.wait(self.runtime.kill_grace_s + 5)
        return code if code is not None else 137

    def explain(self, exit_code: int) -> str | None:
        is_oom = bool(self._state().get("OOMKilled"))
        if exit_code != 0 and (is_oom or self._probe.kills):
            return oom_message(self.container)
        return None

    def close(self) -> None:
        self.runtime.http.delete(f"/containers/{self.id}", params={"force": "true"})
        self._logs.join(timeout=5)

    def _finish(self, exit_code: int) -> int:
        if self._exit_code is None:
            self._logs.join(timeout=5)  # the log stream ends with the container
            self._exit_code = exit_code
        return self._exit_code

    def _state(self) -> dict[str, Any]:
        response = self.runtime.http.get(f"/containers/{self.id}/json")
        if response.status_code != 200:
            return {"Running": False, "ExitCode": 1}
        state: dict[str, Any] = response.json().get("State", {})
        return state

    def _copy_logs(self) -> None:
        params = {"follow": "true", "stdout": "true", "stderr": "true"}
        path = f"/containers/{self.id}/logs"
        with (
            self.paths.stdout_log.open("ab") as stdout,
            self.paths.stderr_log.open("ab") as stderr,
        ):
            files = {"stdout": stdout, "stderr": stderr}
            try:
                with self.runtime.http.stream(
                    "GET", path, params=params, timeout=None
                ) as response:
                    _demultiplex(response.iter_bytes(), files)
            except httpx.HTTPError as exc:
                log.warning("container.logs_failed container=%s error=%s", self.id, exc)


def _demultiplex(chunks: Any, files: Mapping[str, IO[bytes]]) -> None:
    """Split Docker's multiplexed log stream (8-byte frame headers) into the files."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= FRAME_HEADER.size:
            kind, size = FRAME_HEADER.unpack_from(buffer)
            if len(buffer) < FRAME_HEADER.size + size:
                break
            data = buffer[FRAME_HEADER.size : FRAME_HEADER.size + size]
            buffer = buffer[FRAME_HEADER.size + size :]
            target = files[STREAMS.get(kind, "stdout")]
            target.write(data)
            target.flush()


def _create_body(
    spec: RunSpec, container: ContainerSpec, paths: RunPaths
) -> dict[str, Any]:
    env = container_env(spec, container)
    host_config: dict[str, Any] = {
        "Binds": [
            f"{input_folder(spec, paths)}:{SANDBOX_INPUT}:ro",
            f"{paths.output}:{SANDBOX_OUTPUT}:rw",
        ],
    }
    if container.memory_bytes is not None:
        host_config["Memory"] = container.memory_bytes
        host_config["MemorySwap"] = container.memory_bytes
    if container.cpus is not None:
        host_config["NanoCpus"] = int(container.cpus * 1e9)
    return {
        "Image": container.image,
        "Cmd": list(spec.argv),
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": {"nerd.task": spec.task_id},
        "HostConfig": host_config,
        "AttachStdout": True,
        "AttachStderr": True,
    }


def _registry_header(registry: RegistryAuth) -> str:
    document = {
        "username": registry.username,
        "password": registry.password,
        "serveraddress": registry.server,
    }
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def _pull_problem(status: int, body: str) -> str | None:
    """The error a pull's answer or progress stream reports, if any."""
    if status >= 400:
        return _error_text(body) or f"HTTP {status}"
    for line in body.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("error"):
            return str(event["error"])
    return None


def _error_text(body: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(document, dict):
        return str(document.get("message") or document.get("cause") or document)
    return str(document)


def _message(response: httpx.Response) -> str:
    return _error_text(response.text) or f"HTTP {response.status_code}"


__all__ = ["DockerRuntime", "ImageError", "RunningDockerContainer", "docker_socket"]
