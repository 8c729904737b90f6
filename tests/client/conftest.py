"""Fixtures for the SDK tests: an isolated home folder and real ES384 keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from client_keys import SigningKey

NERD_ENV = (
    "NERD_CONFIG_FILE",
    "CONFIG",
    "NERD_CONFIG_JSON",
    "NERD_SESSION_FILE",
    "NERD_JWT",
    "NERD_JWT_REFRESH_TOKEN",
    "NERD_PROJECT",
    "NERD_OUTPUT",
    "NERD_DEBUG",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HOME, so ~/.nerd belongs to this test alone."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    for name in NERD_ENV:
        monkeypatch.delenv(name, raising=False)
    yield folder


@pytest.fixture
def key() -> SigningKey:
    return SigningKey()
