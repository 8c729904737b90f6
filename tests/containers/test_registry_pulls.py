"""Pulling images on podman against a fake registry on 127.0.0.1: the registry
secret's credentials reach it through a private auth file that does not outlive
the pull, "not found" is told from a refused pull, and the password is never shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from container_helpers import Nerd
from fake_registry import FakeRegistry

from helpers import RunningServer
from nerd.models import RegistryAuth
from nerd.worker.runtimes import ImageError
from nerd.worker.runtimes.podman import PodmanRuntime, _auth_file

# About a minute and a half of containers: .ci/run runs it with the slow suites.
pytestmark = pytest.mark.slow


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def start_pulling_workload(nerd: Nerd, registry: FakeRegistry, password: str) -> str:
    """A workload of an image in ``registry``, pulled with a secret of ``password``."""
    secret = ["secret", "create", registry.address, "--type", "registry"]
    nerd.ok(*secret, "-u", "puller", "--password", password)
    image = f"{registry.address}/nerd/none:1"
    workload: str = nerd.json("workload", "start", image, "-p", registry.address)["id"]
    return workload


def test_the_auth_file_is_private_and_holds_base64_credentials(tmp_path: Path) -> None:
    auth = RegistryAuth(server="reg.example:5000", username="u", password="p:w d")

    path = _auth_file(auth, tmp_path)

    assert path.stat().st_mode & 0o777 == 0o600
    token = base64.b64encode(b"u:p:w d").decode()
    assert json.loads(path.read_text()) == {
        "auths": {"reg.example:5000": {"auth": token}}
    }


def test_podman_pulls_with_the_registry_credentials_and_removes_the_auth_file(
    registry: FakeRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    containers_conf: Path,
) -> None:
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(registry.registries_conf))
    registry.credentials = "puller:pw-4471-x"
    auth = RegistryAuth(
        server=registry.address, username="puller", password="pw-4471-x"
    )
    image = f"{registry.address}/nerd/none:1"

    with pytest.raises(ImageError) as raised:
        PodmanRuntime().ensure_image(image, auth, tmp_path)

    assert basic("puller:pw-4471-x") in registry.authorizations
    assert raised.value.message.startswith(f"image not found: {image}: ")
    assert "manifest unknown" in raised.value.message
    assert not (tmp_path / "auth.json").exists()


def test_an_image_the_registry_does_not_have_is_reported_not_found(
    nerd: Nerd, registry: FakeRegistry
) -> None:
    nerd.env["CONTAINERS_REGISTRIES_CONF"] = str(registry.registries_conf)
    image = f"{registry.address}/nerd/none:1"
    workload = nerd.json("workload", "start", image)["id"]
    task = nerd.json("task", "create", workload, "--max-attempts", "1", "--", "true")

    done = nerd.wait_for_task(task["id"])

    assert done["status"] == "FAILED"
    assert done["exit_code"] == 125
    assert done["message"].startswith(f"image not found: {image}: ")


def test_a_pull_refused_for_its_credentials_fails_and_never_shows_the_password(
    nerd: Nerd, registry: FakeRegistry, server: RunningServer
) -> None:
    nerd.env["CONTAINERS_REGISTRIES_CONF"] = str(registry.registries_conf)
    registry.credentials = "puller:the-right-one"
    workload = start_pulling_workload(nerd, registry, "wrong-pw-8812")
    task = nerd.json("task", "create", workload, "--max-attempts", "1", "--", "true")

    done = nerd.wait_for_task(task["id"])
    described = nerd.ok("task", "describe", task["id"]).stdout
    worker_logs = nerd.ok("worker", "logs", workload).stdout
    nerd.ok("secret", "delete", registry.address)

    image = f"{registry.address}/nerd/none:1"
    assert basic("puller:wrong-pw-8812") in registry.authorizations
    assert done["status"] == "FAILED"
    assert done["message"].startswith(f"pulling image {image} failed: ")
    assert "unauthorized" in done["message"] and "***" in done["message"]
    for text in (described, worker_logs, server.log_text()):
        assert "wrong-pw-8812" not in text
