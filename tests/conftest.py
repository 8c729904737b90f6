"""Fixtures shared by every test folder: real nerd servers on 127.0.0.1.

- ``server``: a SQLite server for the test module.
- ``server_factory``: start more (``server_factory(db="postgres", lease_s=1)``);
  all are stopped when the test ends.
- ``db_server`` / ``short_lease_server``: one server per database (SQLite and
  PostgreSQL) for the session, the second with one-second leases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import NERD_ENV, Db, RunningServer, postgres_is_up, start_server

DATABASES = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def _start(tmp_path: Path, db: Db, **options: Any) -> RunningServer:
    if db == "postgres" and not postgres_is_up():
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    return start_server(tmp_path, db, **options)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A nerd server on SQLite, shared by the tests of one module."""
    running = _start(tmp_path_factory.mktemp("server"), "sqlite")
    yield running
    running.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(db: Db = "sqlite", **options: Any) -> RunningServer:
        running = _start(tmp_path, db, **options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session", params=DATABASES)
def db_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server on each database in turn, shared by the whole session."""
    running = _start(tmp_path_factory.mktemp("db-server"), request.param)
    yield running
    running.stop()


@pytest.fixture(scope="session", params=DATABASES)
def short_lease_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server whose runs lapse one second after their last heartbeat."""
    running = _start(tmp_path_factory.mktemp("lease-server"), request.param, lease_s=1)
    yield running
    running.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HOME, so ~/.nerd (session, caches, worker logs) is this test's alone."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    for name in NERD_ENV:
        monkeypatch.delenv(name, raising=False)
    yield folder
