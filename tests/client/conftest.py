"""Fixtures for the SDK tests: an isolated home folder and real ES384 keys."""

from __future__ import annotations

import pytest
from client_keys import SigningKey


@pytest.fixture
def key() -> SigningKey:
    return SigningKey()
