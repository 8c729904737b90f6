"""The ``docker`` runtime: the Docker Engine API on a unix socket, spoken with httpx.

The socket is ``DOCKER_HOST`` (``unix://…``) or ``/var/run/docker.sock``; podman's
``podman system service`` serves the same API, which is how the tests run this code.
A task is: create the container with ``/input`` bound read-only and ``/output`` (on a
404, pull the image, with ``X-Registry-Auth`` from the pull secret, and create again),
attach its stdin if the task has one, start it, copy its log stream into the run's
``stdout.log`` and ``stderr.log`` as it comes, wait, inspect (``OOMKilled``), and
remove it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socket
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
    is_local_only,
    make_run_dir,
    not_here_error,
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
ATTACH_TIMEOUT_S = 30.0
FRAME_HEADER = struct.Struct(">BxxxL")
STREAMS = {1: "stdout", 2: "stderr"}
# A task's stdin is open until the one attached writer ends it.
STDIN_ONCE = {"AttachStdin": True, "OpenStdin": True, "StdinOnce": True}


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
        """Create the container (pulling its image if the engine lacks it), start it."""
        paths = make_run_dir(run_dir, spec.stdin)
        name = f"nerd-{spec.task_id}-{secrets.token_hex(4)}"
        container_id = self._create(
            name, _create_body(spec, container, paths), container
        )
        running = RunningDockerContainer(self, container_id, paths, container)
        try:
            stdin = attach_stdin(self.socket, container_id) if spec.stdin else None
            self._call("POST", f"/containers/{container_id}/start")
        except UsageError:
            running.close()
            raise
        running.follow(stdin, spec.stdin or b"")
        return running

    def pull(self, image: str, registry: RegistryAuth | None) -> None:
        """Pull ``image``; ImageError if it is not found or the pull fails."""
        if is_local_only(image):
            raise not_here_error(image)
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

    def _create(self, name: str, body: dict[str, Any], container: ContainerSpec) -> str:
        """Create the container; a 404 (no such image) pulls the image and retries."""
        args: dict[str, Any] = {"params": {"name": name}, "json": body}
        created = self._request("POST", "/containers/create", **args)
        if created.status_code == 404:
            self.pull(container.image, container.registry)
            created = self._request("POST", "/containers/create", **args)
        if created.status_code >= 400:
            raise _refused("POST", "/containers/create", created)
        return str(created.json()["Id"])

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _refused(method, path, response)
        return response

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UsageError(
                f"the Docker engine at {self.socket} failed: {exc}"
            ) from exc


def _refused(method: str, path: str, response: httpx.Response) -> UsageError:
    return UsageError(
        f"the Docker engine refused {method} {path}: {_message(response)}"
    )


def attach_stdin(socket_path: str, container_id: str) -> socket.socket:
    """A connection to the container's stdin (``attach``, upgraded to a raw stream).

    httpx cannot hand over an upgraded connection, so this one request is written
    by hand. Attach before start, so that nothing the task reads is lost.
    """
    path = f"/{API_VERSION}/containers/{quote(container_id, safe='')}/attach"
    request = (
        f"POST {path}?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(ATTACH_TIMEOUT_S)
        connection.connect(socket_path)
        connection.sendall(request.encode())
        status, body = _read_head(connection)
    except OSError as exc:
        connection.close()
        raise UsageError(f"attaching the task's stdin failed: {exc}") from exc
    if status not in (101, 200):
        connection.close()
        raise UsageError(f"attaching the task's stdin failed: HTTP {status} {body}")
    connection.settimeout(None)
    return connection


def _read_head(connection: socket.socket) -> tuple[int, str]:
    """The status of an HTTP answer, and what followed its head (its error, if any)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    fields = head.split(b" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    return status, _error_text(rest.decode(errors="replace"))[:200]


def _write_stdin(connection: socket.socket, data: bytes) -> None:
    """Send the stdin, end it (the task reads EOF), wait for the engine to hang up."""
    with connection:
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(4096):
                pass
        except OSError as exc:  # the task ended without reading all of it
            log.debug("container.stdin_closed error=%s", exc)


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
        self._stdin: threading.Thread | None = None
        self._exit_code: int | None = None

    def follow(self, stdin: socket.socket | None, data: bytes) -> None:
        """Copy the log stream to the files, and ``data`` to the task's stdin."""
        self._logs.start()
        if stdin is not None:
            self._stdin = threading.Thread(
                target=_write_stdin, args=(stdin, data), daemon=True
            )
            self._stdin.start()

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
        """Remove the container."""
        self.runtime.http.delete(f"/containers/{self.id}", params={"force": "true"})
        for thread in (self._logs, self._stdin):
            if thread is not None and thread.is_alive():
                thread.join(timeout=5)

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
        **(STDIN_ONCE if spec.stdin else {}),
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
