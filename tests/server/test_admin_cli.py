"""``nerd admin user …`` on the database, and ``python -m nerd.server`` itself."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from helpers import RunningServer, create_user, error_of, free_port, login
from nerd.errors import ConflictError, NotFoundError, UsageError
from nerd.server.cli import admin


def test_user_create_prints_a_password_that_logs_in(server: RunningServer) -> None:
    password = create_user(server, "carol")

    with login(server, "carol", password) as client:
        me = client.get("/users/me").json()

    assert (me["username"], me["is_admin"]) == ("carol", False)


def test_user_create_with_password_stdin_prints_no_password(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        admin,
        ["user", "create", "dave", "--password-stdin", "--data-dir", str(tmp_path)],
        input="s3cret-enough\n",
    )

    assert result.exit_code == 0
    assert result.stdout == ""
    assert "created user 'dave'" in result.stderr


def test_creating_an_existing_user_is_a_conflict(tmp_path: Path) -> None:
    CliRunner().invoke(admin, ["user", "create", "erin", "--data-dir", str(tmp_path)])

    result = CliRunner().invoke(
        admin, ["user", "create", "erin", "--data-dir", str(tmp_path)]
    )

    assert isinstance(result.exception, ConflictError)
    assert result.exception.message == "user 'erin' already exists"


def test_a_username_with_spaces_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        admin, ["user", "create", "frank jones", "--data-dir", str(tmp_path)]
    )

    assert isinstance(result.exception, UsageError)
    assert result.exception.message == "'frank jones' is not a username"


def test_a_user_for_an_unknown_project_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        admin,
        ["user", "create", "gina", "--project", "nope", "--data-dir", str(tmp_path)],
    )

    assert isinstance(result.exception, NotFoundError)
    assert result.exception.message == "project 'nope' not found"


def test_user_list_on_a_folder_without_a_server_is_not_found(tmp_path: Path) -> None:
    result = CliRunner().invoke(admin, ["user", "list", "--data-dir", str(tmp_path)])

    assert isinstance(result.exception, NotFoundError)
    assert result.exception.message.startswith("no nerd server database at ")
    assert list(tmp_path.iterdir()) == []


def test_user_create_on_a_fresh_folder_also_makes_the_first_admin(
    tmp_path: Path,
) -> None:
    CliRunner().invoke(admin, ["user", "create", "hana", "--data-dir", str(tmp_path)])

    listing = ["user", "list", "--data-dir", str(tmp_path), "--output", "json"]
    result = CliRunner().invoke(admin, listing)

    assert result.exit_code == 0
    users = {user["username"]: user for user in json.loads(result.stdout)}
    assert users["admin"]["is_admin"] is True
    assert users["admin"]["projects"] == ["default"]
    assert users["hana"]["is_admin"] is False
    mode = stat.S_IMODE((tmp_path / "admin-password").stat().st_mode)
    assert mode == 0o600


def test_the_first_start_tells_how_to_log_in(server: RunningServer) -> None:
    log = server.log_text()

    assert "nerd login --username admin" in log
    assert server.admin_password in log
    assert server.url in log


def test_a_first_start_on_another_port_tells_how_to_point_the_cli_at_it(
    server: RunningServer,
) -> None:
    log = server.log_text()

    assert f'"nerd_api_endpoint": "{server.url}"' in log


def run_server(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m nerd.server ARGS``, for the starts that are meant to fail."""
    return subprocess.run(
        [sys.executable, "-m", "nerd.server", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_refuses_an_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/none"

    result = run_server(
        "--data-dir", str(tmp_path), "--database-url", url, "--port", str(free_port())
    )

    assert result.returncode == 1
    assert result.stderr.startswith(f"nerd: error: cannot open the database {url}")


def test_the_server_refuses_a_bad_port() -> None:
    result = run_server("--port", "http")

    assert result.returncode == 2
    assert "'http' is not a valid integer" in result.stderr


def test_a_port_out_of_range_is_a_usage_error() -> None:
    result = run_server("--port", "99999")

    assert result.returncode == 2
    assert "99999 is not in the range 1<=x<=65535" in result.stderr


def test_a_taken_port_is_one_error_line_and_sets_nothing_up(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_server("--data-dir", str(tmp_path / "data"), "--port", str(port))

    assert result.returncode == 2
    first_line = result.stderr.splitlines()[0]
    assert first_line == (
        f"nerd: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not (tmp_path / "data").exists()


def test_a_disabled_user_cannot_log_in(server: RunningServer) -> None:
    password = create_user(server, "hank")
    _disable(server, "hank")

    response = httpx.post(
        server.api + "/auth/token", json={"username": "hank", "password": password}
    )

    error_of(response, 401, "unauthenticated")


def _disable(server: RunningServer, username: str) -> None:
    from sqlalchemy import update

    from nerd.server import db

    engine = db.make_engine(server.database_url)
    with db.make_sessionmaker(engine)() as session:
        session.execute(
            update(db.User).where(db.User.username == username).values(is_disabled=True)
        )
        session.commit()
    engine.dispose()


def test_the_server_keeps_its_data_folder_private(server: RunningServer) -> None:
    mode = stat.S_IMODE(server.data_dir.stat().st_mode)

    assert mode == 0o700
