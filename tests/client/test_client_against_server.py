"""The SDK against a real nerd server: auth, batch, token renewal, the facade."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import RunningServer, create_user, start_server
from nerd import config
from nerd.client import Client
from nerd.client.auth import AuthClient
from nerd.client.http import Api
from nerd.client.tokens import EnvTokenSource, SessionTokenSource, verify_token
from nerd.errors import (
    AuthError,
    NotFoundError,
    PermissionDeniedError,
    RunExpiredError,
    SessionExpiredError,
)
from nerd.models import TaskStatus


@pytest.fixture(scope="module")
def short_token_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """Access tokens live 30 s: inside the 60 s leeway, so every use renews them."""
    running = start_server(
        tmp_path_factory.mktemp("short"), extra_args=("--token-ttl-s", "30")
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def password(server: RunningServer) -> str:
    return create_user(server, "carol")


def use_server(home: Path, server: RunningServer, public_key: str = "") -> None:
    document = {
        "nerd_api_endpoint": server.url,
        "auth": {"api_endpoint": server.url, "public_key": public_key},
    }
    folder = home / ".nerd"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(document))


def log_in(home: Path, server: RunningServer, username: str, password: str) -> str:
    """Log in through the SDK the way `nerd login` does; the server's key."""
    with Api(server.url) as api:
        auth = AuthClient(api)
        key = auth.public_key().public_key
        pair = auth.login(username, password)
    use_server(home, server, key)
    session = config.load_session()
    session.set_tokens(pair.access_token, pair.refresh_token)
    config.save_session(session)
    return key


def test_login_returns_tokens_signed_by_the_public_key(
    server: RunningServer, password: str
) -> None:
    with Api(server.url) as api:
        auth = AuthClient(api)
        key = auth.public_key()
        pair = auth.login("carol", password)

    claims = verify_token(pair.access_token, key.public_key)
    assert claims["sub"] == "carol"
    assert key.fingerprint.startswith("SHA256:")


def test_a_wrong_password_is_an_auth_error(server: RunningServer) -> None:
    with Api(server.url) as api, pytest.raises(AuthError):
        AuthClient(api).login("carol", "not-the-password")


def test_the_facade_reads_config_and_session(
    home: Path, server: RunningServer, password: str
) -> None:
    log_in(home, server, "carol", password)

    with Client.from_environment() as client:
        me = client.auth.me()
        projects = client.auth.list_projects()

        assert me.username == "carol"
        assert [p.name for p in projects] == ["default"]
        assert client.project == "default"


def test_nerd_project_overrides_the_session_project(
    home: Path, server: RunningServer, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_in(home, server, "carol", password)
    monkeypatch.setenv("NERD_PROJECT", "elsewhere")

    with Client.from_environment() as client:
        assert client.project == "elsewhere"
        with pytest.raises(NotFoundError):
            client.batch.list_queues()


def test_a_queue_and_a_task_go_round_the_worker_routes(
    home: Path, server: RunningServer, password: str
) -> None:
    log_in(home, server, "carol", password)
    with Client.from_environment() as client:
        batch = client.batch
        queue = batch.create_queue()
        task = batch.start_task(queue.id, ["echo", "hi"], env={"A": "1"}, stdin=b"in")
        worker = batch.register_worker(queue.id, "host", 123)

        received = batch.receive(queue.id, worker.id, wait_s=1)
        assert received is not None
        batch.heartbeat(task.id, received.run_token)
        batch.append_log(task.id, received.run_token, "stdout", "hello\n")
        done = batch.succeed(task.id, received.run_token, result="ok")

        assert received.task.id == task.id
        assert received.stdin_b64 == "aW4="
        assert done.status == TaskStatus.SUCCESS
        assert [e.data for e in batch.task_logs(task.id).entries] == ["hello\n"]
        assert batch.task_logs(task.id, after=1).entries == []
        assert batch.describe_queue(queue.id).task_counts == {"SUCCESS": 1}


def test_receive_on_an_empty_queue_is_none(
    home: Path, server: RunningServer, password: str
) -> None:
    log_in(home, server, "carol", password)
    with Client.from_environment() as client:
        queue = client.batch.create_queue()
        worker = client.batch.register_worker(queue.id, "host", 1)

        assert client.batch.receive(queue.id, worker.id, wait_s=0) is None


def test_a_stale_run_token_is_told_the_run_expired(
    home: Path, server: RunningServer, password: str
) -> None:
    log_in(home, server, "carol", password)
    with Client.from_environment() as client:
        batch = client.batch
        queue = batch.create_queue()
        task = batch.start_task(queue.id, ["sleep", "1"])
        worker = batch.register_worker(queue.id, "host", 1)
        received = batch.receive(queue.id, worker.id, wait_s=1)
        assert received is not None
        batch.stop_task(task.id)

        with pytest.raises(RunExpiredError):
            batch.heartbeat(task.id, received.run_token)
        with pytest.raises(RunExpiredError):
            batch.fail(task.id, received.run_token, 1, "boom")


def test_workers_can_be_listed_stopped_and_signed_off(
    home: Path, server: RunningServer, password: str
) -> None:
    log_in(home, server, "carol", password)
    with Client.from_environment() as client:
        batch = client.batch
        queue = batch.create_queue()
        worker = batch.register_worker(queue.id, "host", 7, runtime="process")

        assert worker.id in [w.id for w in batch.list_workers()]
        assert batch.worker_heartbeat(worker.id).stop_requested is False
        batch.stop_worker(worker.id)
        assert batch.worker_heartbeat(worker.id).stop_requested is True
        batch.deregister_worker(worker.id)
        assert batch.describe_worker(worker.id).status == "gone"


def test_deleting_a_queue_deletes_its_tasks(
    home: Path, server: RunningServer, password: str
) -> None:
    log_in(home, server, "carol", password)
    with Client.from_environment() as client:
        queue = client.batch.create_queue()
        task = client.batch.start_task(queue.id, ["true"])

        client.batch.delete_queue(queue.id)

        with pytest.raises(NotFoundError):
            client.batch.describe_task(task.id)
        with pytest.raises(NotFoundError):
            client.batch.describe_queue(queue.id)


def test_a_worker_token_names_its_project_and_renews_in_memory(
    home: Path, server: RunningServer, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_in(home, server, "carol", password)
    with Client.from_environment() as client:
        pair = client.auth.worker_token("default")
        queue = client.batch.create_queue()
    monkeypatch.setenv("NERD_JWT", pair.access_token)
    monkeypatch.setenv("NERD_JWT_REFRESH_TOKEN", pair.refresh_token)
    (home / ".nerd" / "session.json").unlink()

    with Client.from_environment() as worker_client:
        assert isinstance(worker_client.token_source, EnvTokenSource)
        assert worker_client.project == "default"
        registered = worker_client.batch.register_worker(queue.id, "h", 1)
        assert registered.queue == queue.id
        with pytest.raises(PermissionDeniedError):
            worker_client.batch.create_queue()


def test_the_session_is_renewed_and_written_back_when_it_runs_out(
    home: Path, short_token_server: RunningServer
) -> None:
    password = create_user(short_token_server, "dave")
    log_in(home, short_token_server, "dave", password)
    before = config.load_session()

    with Client.from_environment() as client:
        assert client.auth.me().username == "dave"

    after = config.load_session()
    assert after.access_token != before.access_token
    assert after.refresh_token == before.refresh_token


def test_a_revoked_refresh_token_means_the_session_expired(
    home: Path, short_token_server: RunningServer
) -> None:
    password = create_user(short_token_server, "erin")
    key = log_in(home, short_token_server, "erin", password)
    session = config.load_session()
    with Api(short_token_server.url) as api:
        auth = AuthClient(api)
        auth.logout(session.refresh_token)
        source = SessionTokenSource(session.path, key, auth.refresh)

        with pytest.raises(SessionExpiredError) as caught:
            source()

    assert caught.value.message == "your session has expired, run `nerd login`"
