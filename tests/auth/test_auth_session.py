"""Sessions: renewal, logout, private files, and no secret in any output or log."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from auth_helpers import ALICE, NerdRunner

from helpers import RunningServer, create_user, error_of, login, new_queue
from nerd.provision.local import is_worker_process, list_local_workers, workers_dir

# Shorter than the CLI's 60 s renewal leeway: every command renews its token.
SHORT_TTL = ("--token-ttl-s", "30")


@pytest.fixture
def short_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(extra_args=SHORT_TTL)


def _config_json(server: RunningServer, log_file: Path) -> str:
    key = httpx.get(server.api + "/auth/public-key").json()["public_key"]
    auth = {"api_endpoint": server.url, "public_key": key}
    logging_section = {"enabled": True, "file_location": str(log_file)}
    return json.dumps(
        {"nerd_api_endpoint": server.url, "auth": auth, "logging": logging_section}
    )


def test_a_verbose_session_never_shows_a_token_password_or_refresh_secret(
    short_server: RunningServer, nerd: NerdRunner, home: Path
) -> None:
    password = create_user(short_server, ALICE)
    log_file = home / "nerd.log"
    env = {"NERD_CONFIG_JSON": _config_json(short_server, log_file)}
    outputs = []

    outputs.append(
        nerd(
            "-v",
            "login",
            "-u",
            ALICE,
            "--password-stdin",
            stdin=password.encode(),
            env=env,
        )
    )
    first = json.loads((home / ".nerd" / "session.json").read_text())["jwt"]
    outputs.append(nerd("-v", "queue", "create", env=env))
    outputs.append(nerd("-v", "queue", "list", "--output", "json", env=env))
    second = json.loads((home / ".nerd" / "session.json").read_text())["jwt"]
    outputs.append(nerd("-v", "logout", env=env))

    assert all(result.exit_code == 0 for result in outputs), [r.stderr for r in outputs]
    assert first["token"] != second["token"]
    assert "DEBUG" in outputs[1].stderr
    everything = "".join(r.stdout + r.stderr for r in outputs)
    everything += log_file.read_text() + short_server.log_text()
    for secret in (password, first["token"], first["refresh_token"], second["token"]):
        assert secret not in everything


def _environ_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def _wait_for_exit(pids: list[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while any(map(is_worker_process, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(is_worker_process, pids)), "the workers did not exit"


def test_verbose_worker_start_and_the_worker_logs_never_show_a_token_or_secret(
    short_server: RunningServer, nerd: NerdRunner, home: Path
) -> None:
    password = create_user(short_server, ALICE)
    log_file = home / "nerd.log"
    # NERD_DEBUG reaches the workers too: their logs get debug lines.
    env = {"NERD_CONFIG_JSON": _config_json(short_server, log_file), "NERD_DEBUG": "1"}
    stdin = password.encode()
    outputs = [
        nerd("-v", "login", "-u", ALICE, "--password-stdin", stdin=stdin, env=env)
    ]
    user = json.loads((home / ".nerd" / "session.json").read_text())["jwt"]
    queue = nerd("queue", "create", env=env).stdout.strip()
    nerd("task", "start", queue, "--", "echo", "done", env=env)

    outputs.append(
        nerd("-v", "worker", "start", queue, "-n", "2", "--idle-exit-s", "2", env=env)
    )
    pids = [worker.pid for worker in list_local_workers()]
    environs = [_environ_of(pid) for pid in pids]
    _wait_for_exit(pids)
    outputs.append(nerd("-v", "worker", "logs", str(pids[0]), env=env))

    assert all(result.exit_code == 0 for result in outputs), [r.stderr for r in outputs]
    worker_logs = "".join(path.read_text() for path in workers_dir().glob("*.log"))
    assert "task.succeeded" in worker_logs and "DEBUG" in worker_logs
    everything = "".join(r.stdout + r.stderr for r in outputs) + worker_logs
    everything += log_file.read_text() + short_server.log_text()
    worker_secrets = [
        e[k] for e in environs for k in ("NERD_JWT", "NERD_JWT_REFRESH_TOKEN")
    ]
    for secret in (password, user["token"], user["refresh_token"], *worker_secrets):
        assert secret not in everything
    assert "eyJ" not in everything  # how every JWT starts, renewed ones included


def test_the_nerd_folder_is_0700_and_the_session_0600_after_a_first_login(
    short_server: RunningServer, nerd: NerdRunner, home: Path
) -> None:
    password = create_user(short_server, ALICE)
    env = {"NERD_CONFIG_JSON": _config_json(short_server, home / "log")}

    result = nerd(
        "login", "-u", ALICE, "--password-stdin", stdin=password.encode(), env=env
    )

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE((home / ".nerd").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / ".nerd" / "session.json").stat().st_mode) == 0o600
    assert not list((home / ".nerd").glob(".session.json.*"))


def test_logout_revokes_the_refresh_token_on_the_server(
    short_server: RunningServer, nerd: NerdRunner, home: Path
) -> None:
    password = create_user(short_server, ALICE)
    env = {"NERD_CONFIG_JSON": _config_json(short_server, home / "log")}
    nerd("login", "-u", ALICE, "--password-stdin", stdin=password.encode(), env=env)
    refresh = json.loads((home / ".nerd" / "session.json").read_text())["jwt"][
        "refresh_token"
    ]

    logged_out = nerd("logout", env=env)
    renewed = httpx.post(
        short_server.api + "/auth/refresh", json={"refresh_token": refresh}
    )
    after = nerd("queue", "list", env=env)

    assert logged_out.exit_code == 0 and "Logged out." in logged_out.stderr
    assert error_of(renewed, 401, "session_expired")
    assert after.exit_code == 4
    assert "nerd: error: not logged in" in after.stderr


def test_a_session_revoked_elsewhere_says_run_nerd_login(
    short_server: RunningServer, nerd: NerdRunner, home: Path
) -> None:
    password = create_user(short_server, ALICE)
    env = {"NERD_CONFIG_JSON": _config_json(short_server, home / "log")}
    nerd("login", "-u", ALICE, "--password-stdin", stdin=password.encode(), env=env)
    refresh = json.loads((home / ".nerd" / "session.json").read_text())["jwt"][
        "refresh_token"
    ]
    httpx.post(short_server.api + "/auth/logout", json={"refresh_token": refresh})

    result = nerd("queue", "list", env=env)

    assert result.exit_code == 4
    assert "nerd: error: your session has expired, run `nerd login`" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_expired_refresh_token_says_run_nerd_login_and_exits_4(
    server_factory: Callable[..., RunningServer], nerd: NerdRunner, home: Path
) -> None:
    server = server_factory(extra_args=(*SHORT_TTL, "--refresh-ttl-s", "2"))
    password = create_user(server, ALICE)
    env = {"NERD_CONFIG_JSON": _config_json(server, home / "log")}
    logged_in = nerd(
        "login", "-u", ALICE, "--password-stdin", stdin=password.encode(), env=env
    )
    refresh = json.loads((home / ".nerd" / "session.json").read_text())["jwt"][
        "refresh_token"
    ]
    time.sleep(3)  # past the refresh token's 2 s; the access token renews at once

    result = nerd("queue", "list", env=env)
    renewed = httpx.post(server.api + "/auth/refresh", json={"refresh_token": refresh})

    assert logged_in.exit_code == 0, logged_in.stderr
    assert result.exit_code == 4
    assert result.stderr.startswith(
        "nerd: error: your session has expired, run `nerd login`"
    )
    assert "Traceback" not in result.stderr
    assert error_of(renewed, 401, "session_expired") == "the refresh token has expired"


def test_a_worker_token_keeps_working_past_its_lifetime(
    server_factory: Callable[..., RunningServer], nerd: NerdRunner, home: Path
) -> None:
    server = server_factory(extra_args=("--token-ttl-s", "1"))
    password = create_user(server, ALICE)
    with login(server, ALICE, password) as alice:
        queue = new_queue(alice)
        pair = alice.post("/auth/worker-token", json={"project": "default"}).json()
    env = {
        "NERD_CONFIG_JSON": _config_json(server, home / "log"),
        "NERD_JWT": pair["access_token"],
    }
    time.sleep(7)  # past the token's 1 s and the server's 5 s leeway

    renewed = nerd(
        "queue",
        "describe",
        queue,
        env={**env, "NERD_JWT_REFRESH_TOKEN": pair["refresh_token"]},
    )
    stuck = nerd("queue", "describe", queue, env=env)

    assert renewed.exit_code == 0, renewed.stderr
    assert stuck.exit_code == 4
    assert "your session has expired, run `nerd login`" in stuck.stderr
