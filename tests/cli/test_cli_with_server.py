"""The CLI against a real nerd server: login, projects, queues, tasks, datasets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cli_helpers import Nerd

from helpers import RunningServer, admin_client, create_user
from nerd import config

ALICE = "alice"


@pytest.fixture(scope="module")
def password(server: RunningServer) -> str:
    with admin_client(server) as admin:
        assert admin.post("/projects", json={"name": "physics"}).status_code == 201
    return create_user(server, ALICE, projects=("default", "physics"))


@pytest.fixture
def configured(home: Path, server: RunningServer) -> Path:
    """A config that points at the test server and trusts no key yet."""
    folder = home / ".nerd"
    folder.mkdir()
    path = folder / "config.json"
    document = {
        "nerd_api_endpoint": server.url,
        "auth": {"api_endpoint": server.url},
        "kept": {"unknown": True},
    }
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def logged_in(nerd: Nerd, configured: Path, password: str) -> Path:
    result = nerd("login", "-u", ALICE, "--password-stdin", stdin=password.encode())
    assert result.exit_code == 0, result.stderr
    return configured


def test_login_pins_the_key_prints_its_fingerprint_and_keeps_unknown_keys(
    nerd: Nerd, configured: Path, password: str, home: Path
) -> None:
    result = nerd("login", "-u", ALICE, "--password-stdin", stdin=password.encode())

    saved = json.loads(configured.read_text())
    assert result.exit_code == 0
    assert "signs with key SHA256:" in result.stderr
    assert f"Logged in as '{ALICE}'" in result.stderr
    assert saved["auth"]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert saved["kept"] == {"unknown": True}
    session_file = home / ".nerd" / "session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert config.load_session().access_token


def test_a_wrong_password_exits_4_and_stores_nothing(
    nerd: Nerd, configured: Path, home: Path
) -> None:
    result = nerd("login", "-u", ALICE, "--password-stdin", stdin=b"wrong\n")

    assert result.exit_code == 4
    assert "nerd: error: wrong username or password" in result.stderr
    assert not (home / ".nerd" / "session.json").exists()
    assert "public_key" not in json.loads(configured.read_text())["auth"]


def test_a_server_key_other_than_the_configured_one_is_refused(
    nerd: Nerd, configured: Path, password: str, home: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    document = json.loads(configured.read_text())
    document["auth"]["public_key"] = pem
    configured.write_text(json.dumps(document))

    result = nerd("login", "-u", ALICE, "--password-stdin", stdin=password.encode())

    assert result.exit_code == 4
    assert "signs with key SHA256:" in result.stderr
    assert "not the configured SHA256:" in result.stderr
    assert "remove auth.public_key" in result.stderr
    assert not (home / ".nerd" / "session.json").exists()


def test_project_list_marks_the_current_project(nerd: Nerd, logged_in: Path) -> None:
    result = nerd("project", "list", "--output", "json")

    projects = json.loads(result.stdout)
    assert [(p["name"], p["current"]) for p in projects] == [
        ("default", True),
        ("physics", False),
    ]


def test_project_set_switches_the_project_for_later_commands(
    nerd: Nerd, logged_in: Path
) -> None:
    switched = nerd("project", "set", "physics")
    queue_id = nerd("queue", "create").stdout.strip()
    described = nerd("queue", "describe", queue_id, "--output", "json")

    assert switched.exit_code == 0
    assert config.load_session().project == "physics"
    assert json.loads(described.stdout)["project"] == "physics"


def test_project_set_to_a_project_you_lack_exits_3(nerd: Nerd, logged_in: Path) -> None:
    result = nerd("project", "set", "chemistry")

    assert result.exit_code == 3
    assert "no project 'chemistry'" in result.stderr
    assert config.load_session().project == ""


def test_queue_commands_round_trip(nerd: Nerd, logged_in: Path) -> None:
    queue_id = nerd("queue", "create").stdout.strip()

    listed = json.loads(nerd("queue", "list", "--output", "json").stdout)
    raw = nerd("queue", "list", "--output", "raw").stdout
    deleted = nerd("queue", "delete", queue_id)
    after = nerd("queue", "describe", queue_id)

    assert queue_id in [q["id"] for q in listed]
    assert f"{queue_id}\t\t" in raw
    assert deleted.exit_code == 0
    assert f"Deleted queue '{queue_id}'" in deleted.stderr
    assert after.exit_code == 3


def test_task_start_sends_argv_env_and_piped_stdin(nerd: Nerd, logged_in: Path) -> None:
    queue_id = nerd("queue", "create").stdout.strip()

    started = nerd(
        "task", "start", queue_id, "-e", "A=1", "--", "sh", "-c", "cat", stdin=b"data"
    )
    task_id = started.stdout.strip()
    received = nerd("task", "receive", queue_id, "--wait-s", "1", "--output", "json")

    task = json.loads(
        nerd("task", "describe", queue_id, task_id, "--json-format").stdout
    )
    assert task["argv"] == ["sh", "-c", "cat"]
    assert task["env"] == {"A": "1"}
    assert json.loads(received.stdout)["stdin_b64"] == "ZGF0YQ=="


def test_task_create_is_task_start(nerd: Nerd, logged_in: Path) -> None:
    queue_id = nerd("queue", "create").stdout.strip()

    task_id = nerd("task", "create", queue_id, "--", "true").stdout.strip()
    listed = nerd("task", "list", queue_id, "--output", "raw").stdout

    assert listed.startswith(f"{task_id}\tPENDING\ttrue\t0\t")


def test_a_task_named_with_the_wrong_queue_is_not_found(
    nerd: Nerd, logged_in: Path
) -> None:
    first = nerd("queue", "create").stdout.strip()
    second = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", first, "--", "true").stdout.strip()

    result = nerd("task", "describe", second, task_id)

    assert result.exit_code == 3
    assert f"task '{task_id}' is not in queue '{second}'" in result.stderr


def test_an_unknown_task_exits_3(nerd: Nerd, logged_in: Path) -> None:
    result = nerd("task", "describe", "t-0123456789abcdef")

    assert result.exit_code == 3
    assert result.stderr.startswith("nerd: error: ")


def test_the_worker_verbs_report_a_run_and_logs_are_printed(
    nerd: Nerd, logged_in: Path
) -> None:
    queue_id = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", queue_id, "--", "echo", "hi").stdout.strip()
    received = json.loads(nerd("task", "receive", queue_id, "--json-format").stdout)
    token = received["run_token"]

    beat = nerd("task", "heartbeat", queue_id, task_id, token)
    failed = nerd(
        "task", "failure", queue_id, task_id, token, "3", "boom", "--json-format"
    )
    stale = nerd("task", "success", queue_id, task_id, token, "ok")

    assert beat.exit_code == 0 and float(beat.stdout) > 0
    assert json.loads(failed.stdout)["status"] == "PENDING"
    assert stale.exit_code == 8


def test_task_stop_stops_a_pending_task(nerd: Nerd, logged_in: Path) -> None:
    queue_id = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", queue_id, "--", "true").stdout.strip()

    result = nerd("task", "stop", queue_id, task_id, "--output", "json")

    assert json.loads(result.stdout)["status"] == "STOPPED"


def test_upload_prints_the_id_then_download_restores_the_folder(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "input"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("hello")

    uploaded = nerd("upload", str(folder))
    dataset_id = uploaded.stdout.strip()
    downloaded = nerd("download", dataset_id, str(tmp_path / "copy"))

    assert uploaded.stderr.startswith(f"Uploading dataset with ID '{dataset_id}'")
    assert downloaded.stderr.startswith(f"Downloading dataset with ID '{dataset_id}'")
    assert (tmp_path / "copy" / "sub" / "a.txt").read_text() == "hello"


def test_download_of_a_queue_puts_each_output_in_a_task_folder(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / "out.txt").write_text("42")
    dataset_id = nerd("dataset", "upload", str(folder)).stdout.strip()
    queue_id = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", queue_id, "--", "true").stdout.strip()
    token = json.loads(nerd("task", "receive", queue_id, "--json-format").stdout)
    nerd("task", "success", queue_id, task_id, token["run_token"], "ok", dataset_id)

    by_task = nerd("download", task_id, str(tmp_path / "one"))
    by_queue = nerd("download", queue_id, str(tmp_path / "all"), "--output", "json")

    assert by_task.exit_code == by_queue.exit_code == 0
    assert (tmp_path / "one" / "out.txt").read_text() == "42"
    assert (tmp_path / "all" / task_id / "out.txt").read_text() == "42"
    assert json.loads(by_queue.stdout)["downloaded"][0]["task"] == task_id


def test_download_of_a_task_without_output_exits_3(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    queue_id = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", queue_id, "--", "true").stdout.strip()

    result = nerd("download", task_id, str(tmp_path / "out"))

    assert result.exit_code == 3
    assert f"task '{task_id}' has no output dataset" in result.stderr


def test_dataset_list_describe_and_delete(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    dataset_id = nerd("upload", str(tmp_path / "d")).stdout.strip()

    listed = json.loads(nerd("dataset", "list", "--output", "json").stdout)
    described = json.loads(
        nerd("dataset", "describe", dataset_id, "--json-format").stdout
    )
    deleted = nerd("dataset", "delete", dataset_id)
    gone = nerd("dataset", "describe", dataset_id)

    assert dataset_id in [d["id"] for d in listed]
    assert described["status"] == "ready"
    assert deleted.exit_code == 0
    assert gone.exit_code == 3


def test_logout_forgets_the_tokens(nerd: Nerd, logged_in: Path) -> None:
    result = nerd("logout")
    after = nerd("queue", "list")

    assert result.exit_code == 0
    assert after.exit_code == 4
    assert "not logged in" in after.stderr


def test_nerd_jwt_overrides_the_session(
    nerd: Nerd, logged_in: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_JWT", "not-a-token")

    result = nerd("queue", "list")

    assert result.exit_code == 4
    assert "the token was refused" in result.stderr


def test_a_session_that_cannot_renew_exits_4_saying_it_expired(
    nerd: Nerd, home: Path, server_factory: object, tmp_path: Path
) -> None:
    server: RunningServer = server_factory(extra_args=("--token-ttl-s", "30"))  # type: ignore[operator]
    secret = create_user(server, "frank")
    (home / ".nerd").mkdir()
    endpoint = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (home / ".nerd" / "config.json").write_text(json.dumps(endpoint))
    nerd("login", "-u", "frank", "--password-stdin", stdin=secret.encode())
    session = config.load_session()
    session.set_tokens(session.access_token, "revoked-or-unknown")
    config.save_session(session)

    result = nerd("queue", "list")

    assert result.exit_code == 4
    assert "your session has expired, run `nerd login`" in result.stderr
    assert os.environ.get("NERD_JWT") is None


def test_download_of_a_queue_without_outputs_exits_3(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    queue_id = nerd("queue", "create").stdout.strip()
    nerd("task", "start", queue_id, "--", "true")

    result = nerd("download", queue_id, str(tmp_path / "out"))

    assert result.exit_code == 3
    assert f"no task in queue '{queue_id}' has an output dataset" in result.stderr


def test_upload_resume_finishes_a_dataset_created_earlier(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    from nerd.client import Client

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    with Client.from_environment() as client:
        dataset_id = client.data.create(name="later").id

    result = nerd("upload", str(tmp_path / "d"), "--resume", dataset_id)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == dataset_id
    described = json.loads(
        nerd("dataset", "describe", dataset_id, "--json-format").stdout
    )
    assert (described["status"], described["name"]) == ("ready", "later")


def test_download_into_a_dangling_symlink_is_a_usage_error(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    dataset_id = nerd("upload", str(folder)).stdout.strip()
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")

    result = nerd("download", dataset_id, str(tmp_path / "link"))

    assert result.exit_code == 2
    assert "is a symlink to nothing" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_enabled_logging_keeps_tables_in_the_log_file(
    nerd: Nerd, logged_in: Path, home: Path
) -> None:
    log_file = home / "nerd.log"
    document = json.loads(logged_in.read_text())
    document["enable_logging"] = True
    document["logging"] = {"enabled": True, "file_location": str(log_file)}
    logged_in.write_text(json.dumps(document))
    queue_id = nerd("queue", "create").stdout.strip()

    listed = nerd("queue", "list")

    assert queue_id in listed.stdout
    assert listed.stdout.strip() in log_file.read_text()


def test_login_project_set_and_logout_print_one_json_document(
    nerd: Nerd, configured: Path, password: str
) -> None:
    login = nerd(
        "login",
        "-u",
        ALICE,
        "--password-stdin",
        "--json-format",
        stdin=password.encode(),
    )
    chosen = nerd("project", "set", "physics", "--output", "json")
    logout = nerd("logout", "--output", "json")

    assert json.loads(login.stdout)["username"] == ALICE
    assert json.loads(chosen.stdout) == {"project": "physics"}
    assert json.loads(logout.stdout) == {"logged_out": True}


def test_a_value_the_sdk_refuses_is_a_one_line_usage_error(
    nerd: Nerd, logged_in: Path
) -> None:
    result = nerd("secret", "create", "Bad Name", "K=V")

    assert result.exit_code == 2
    assert result.stderr.startswith("nerd: error: invalid name: String should match")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_empty_image_name_is_a_usage_error(nerd: Nerd, logged_in: Path) -> None:
    result = nerd("workload", "start", "", "-i", "0")

    assert result.exit_code == 2
    assert "nerd: error: invalid image" in result.stderr


def test_a_secret_value_without_a_key_names_the_secret_form(
    nerd: Nerd, logged_in: Path
) -> None:
    result = nerd("secret", "create", "x", "NOEQ")

    assert result.exit_code == 2
    assert "hint: give each value as KEY=VALUE" in result.stderr


def test_a_key_given_twice_is_a_usage_error(nerd: Nerd, logged_in: Path) -> None:
    result = nerd("secret", "create", "x", "K=V", "K=W")

    assert result.exit_code == 2
    assert "'K' is given twice" in result.stderr


def test_download_and_task_list_accept_a_workload_id(
    nerd: Nerd, logged_in: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / "out.txt").write_text("42")
    dataset_id = nerd("upload", str(folder)).stdout.strip()
    workload = json.loads(
        nerd("workload", "start", "img", "-i", "0", "--json-format").stdout
    )
    task_id = nerd("task", "create", workload["id"], "--", "x").stdout.strip()
    queue_id = workload["queue"]
    token = json.loads(nerd("task", "receive", queue_id, "--json-format").stdout)
    nerd("task", "success", queue_id, task_id, token["run_token"], "ok", dataset_id)

    listed = nerd("task", "list", workload["id"], "--output", "json")
    downloaded = nerd("download", workload["id"], str(tmp_path / "all"))

    assert [t["id"] for t in json.loads(listed.stdout)] == [task_id]
    assert downloaded.exit_code == 0, downloaded.stderr
    assert (tmp_path / "all" / task_id / "out.txt").read_text() == "42"
