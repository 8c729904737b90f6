"""Users and projects: admin commands, project members, and locking out guessers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from auth_helpers import ALICE, NerdRunner

from helpers import RunningServer, admin_client, create_user, error_of, login


@pytest.fixture
def logged_in(nerd: NerdRunner, configured: Path, alice_password: str) -> Path:
    result = nerd(
        "login", "-u", ALICE, "--password-stdin", stdin=alice_password.encode()
    )
    assert result.exit_code == 0, result.stderr
    return configured


def _admin(server: RunningServer, nerd: NerdRunner, *args: str) -> tuple[int, str, str]:
    where = ["--data-dir", str(server.data_dir), "--database-url", server.database_url]
    result = nerd("admin", "user", *args, *where)
    return result.exit_code, result.stdout, result.stderr


def _log_in(server: RunningServer, username: str, password: str) -> httpx.Response:
    body = {"username": username, "password": password}
    return httpx.post(server.api + "/auth/token", json=body)


# --- locking out password guessers


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(
    server: RunningServer,
) -> None:
    password = create_user(server, "guessed")
    for _ in range(5):
        assert _log_in(server, "guessed", "wrong").status_code == 401

    locked = _log_in(server, "guessed", password)

    message = error_of(locked, 401, "unauthenticated")
    assert "too many failed logins for 'guessed'; try again in" in message
    assert password not in locked.text


def test_an_unknown_username_is_locked_the_same_way(server: RunningServer) -> None:
    for _ in range(5):
        assert _log_in(server, "nobody-here", "wrong").status_code == 401

    answer = _log_in(server, "nobody-here", "wrong")

    assert "too many failed logins" in error_of(answer, 401, "unauthenticated")


def test_a_good_password_before_the_lock_clears_the_count(
    server: RunningServer,
) -> None:
    password = create_user(server, "forgetful")
    for _ in range(4):
        _log_in(server, "forgetful", "wrong")
    assert _log_in(server, "forgetful", password).status_code == 200

    for _ in range(4):
        _log_in(server, "forgetful", "wrong")

    assert _log_in(server, "forgetful", password).status_code == 200


def test_the_cli_says_the_account_is_locked(
    server: RunningServer, nerd: NerdRunner, configured: Path
) -> None:
    password = create_user(server, "hammered")
    for _ in range(5):
        _log_in(server, "hammered", "wrong")

    result = nerd(
        "login", "-u", "hammered", "--password-stdin", stdin=password.encode()
    )

    assert result.exit_code == 4
    assert "nerd: error: too many failed logins for 'hammered'" in result.stderr


# --- nerd admin user create | list | disable | enable


def test_admin_user_disable_ends_logins_and_sessions(
    server: RunningServer, nerd: NerdRunner
) -> None:
    password = create_user(server, "leaver")
    refresh = _log_in(server, "leaver", password).json()["refresh_token"]

    code, _, stderr = _admin(server, nerd, "disable", "leaver")
    listed = _admin(server, nerd, "list", "--output", "raw")[1]

    assert code == 0, stderr
    assert "disabled user 'leaver'" in stderr
    assert "leaver\tno\tyes\tdefault" in listed
    assert error_of(_log_in(server, "leaver", password), 401, "unauthenticated")
    renewed = httpx.post(server.api + "/auth/refresh", json={"refresh_token": refresh})
    assert error_of(renewed, 401, "session_expired")


def test_admin_user_enable_lets_a_disabled_user_back_in(
    server: RunningServer, nerd: NerdRunner
) -> None:
    password = create_user(server, "returner")
    _admin(server, nerd, "disable", "returner")

    code, _, _ = _admin(server, nerd, "enable", "returner")

    assert code == 0
    assert _log_in(server, "returner", password).status_code == 200


def test_disabling_an_unknown_user_exits_3(
    server: RunningServer, nerd: NerdRunner
) -> None:
    code, _, stderr = _admin(server, nerd, "disable", "ghost")

    assert code == 3
    assert "nerd: error: user 'ghost' not found" in stderr


# --- nerd project create, nerd project member add | list | remove


def test_project_create_needs_an_admin(nerd: NerdRunner, logged_in: Path) -> None:
    result = nerd("project", "create", "alices-own")

    assert result.exit_code == 5
    assert "nerd: error: only an admin may create projects" in result.stderr


def test_an_admin_creates_a_project_and_adds_and_removes_a_member(
    server: RunningServer, nerd: NerdRunner, configured: Path, alice_password: str
) -> None:
    admin_password = server.admin_password.encode()
    assert (
        nerd("login", "-u", "admin", "--password-stdin", stdin=admin_password).exit_code
        == 0
    )

    created = nerd("project", "create", "chemistry", "--output", "json")
    added = nerd("project", "member", "add", ALICE, "--project", "chemistry")
    members = nerd("project", "member", "list", "-p", "chemistry", "--output", "json")
    with login(server, ALICE, alice_password) as alice:
        seen_by_alice = alice.get("/projects/chemistry/queues").status_code
    removed = nerd("project", "member", "remove", ALICE, "-p", "chemistry")
    with login(server, ALICE, alice_password) as alice:
        seen_after = alice.get("/projects/chemistry/queues").status_code

    assert created.exit_code == 0 and json.loads(created.stdout)["name"] == "chemistry"
    assert added.exit_code == 0
    assert "Added 'alice' to project 'chemistry'" in added.stderr
    names = [m["username"] for m in json.loads(members.stdout)]
    assert names == ["admin", ALICE]
    assert seen_by_alice == 200
    assert removed.exit_code == 0
    assert seen_after == 404


def test_adding_an_unknown_user_exits_3(nerd: NerdRunner, logged_in: Path) -> None:
    result = nerd("project", "member", "add", "ghost", "-p", "default")

    assert result.exit_code == 3
    assert "nerd: error: user 'ghost' not found" in result.stderr


def test_adding_a_member_twice_exits_8(nerd: NerdRunner, logged_in: Path) -> None:
    result = nerd("project", "member", "add", ALICE, "-p", "default")

    assert result.exit_code == 8
    assert "'alice' is already a member of default" in result.stderr


def test_the_last_member_cannot_be_removed(
    server: RunningServer, alice_password: str
) -> None:
    with admin_client(server) as admin:
        admin.post("/projects", json={"name": "solo"})

        answer = admin.delete("/projects/solo/members/admin")

    assert "'admin' is the last member of solo" in error_of(answer, 409, "conflict")


def test_a_member_who_is_not_an_admin_cannot_remove_another_exits_5(
    server: RunningServer, nerd: NerdRunner, logged_in: Path
) -> None:
    with admin_client(server) as admin:
        admin.post("/projects", json={"name": "shared-lab"})
        admin.post("/projects/shared-lab/members", json={"username": ALICE})

    result = nerd("project", "member", "remove", "admin", "-p", "shared-lab")

    assert result.exit_code == 5
    assert "only an admin may remove another member" in result.stderr
    with admin_client(server) as admin:
        assert admin.get("/projects/shared-lab/queues").status_code == 200


def test_a_member_may_leave_a_project(
    server: RunningServer, nerd: NerdRunner, logged_in: Path, alice_password: str
) -> None:
    with admin_client(server) as admin:
        admin.post("/projects", json={"name": "leavable"})
        admin.post("/projects/leavable/members", json={"username": ALICE})

    result = nerd("project", "member", "remove", ALICE, "-p", "leavable")

    assert result.exit_code == 0
    with login(server, ALICE, alice_password) as alice:
        assert alice.get("/projects/leavable/queues").status_code == 404


def test_members_of_a_project_one_is_not_in_are_404(
    server: RunningServer, nerd: NerdRunner, logged_in: Path
) -> None:
    with admin_client(server) as admin:
        admin.post("/projects", json={"name": "secret-lab"})

    result = nerd("project", "member", "add", ALICE, "-p", "secret-lab")

    assert result.exit_code == 3
    assert "nerd: error: project 'secret-lab' not found" in result.stderr


def test_nerd_project_chooses_the_project_of_member_commands(
    nerd: NerdRunner, logged_in: Path
) -> None:
    result = nerd(
        "project", "member", "list", "--output", "json", env={"NERD_PROJECT": "physics"}
    )

    assert result.exit_code == 0, result.stderr
    assert ALICE in [m["username"] for m in json.loads(result.stdout)]


def test_nerd_config_json_replaces_the_config_file(
    server: RunningServer, nerd: NerdRunner, home: Path, alice_password: str
) -> None:
    key = httpx.get(server.api + "/auth/public-key").json()["public_key"]
    auth = {"api_endpoint": server.url, "public_key": key}
    document = {"nerd_api_endpoint": server.url, "auth": auth}
    env = {"NERD_CONFIG_JSON": json.dumps(document)}

    logged = nerd(
        "login", "-u", ALICE, "--password-stdin", stdin=alice_password.encode(), env=env
    )
    listed = nerd("project", "list", "--output", "json", env=env)

    assert logged.exit_code == 0, logged.stderr
    assert not (home / ".nerd" / "config.json").exists()
    assert listed.exit_code == 0, listed.stderr
    assert {"default", "physics"} <= {p["name"] for p in json.loads(listed.stdout)}
