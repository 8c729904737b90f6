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
