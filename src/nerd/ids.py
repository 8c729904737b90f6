"""Resource ids: a kind prefix and lowercase hex, like ``d-96fac377``."""

from __future__ import annotations

import re
import secrets

from nerd.errors import UsageError

KINDS = {
    "d": "dataset",
    "t": "task",
    "q": "queue",
    "w": "workload",
    "wk": "worker",
    "r": "run",
}

_ID = re.compile(r"^(d|t|q|w|wk|r)-[0-9a-f]{8,64}$")


def new_id(prefix: str) -> str:
    """A fresh random id of the kind ``prefix``, 16 hex digits long."""
    return f"{prefix}-{secrets.token_hex(8)}"


def kind_of(value: str) -> str | None:
    """The prefix of a well-formed id, or None."""
    match = _ID.match(value)
    return match.group(1) if match else None


def check_id(value: str, *prefixes: str) -> str:
    """Return ``value`` if it is an id of one of the kinds, else raise UsageError."""
    if kind_of(value) in prefixes:
        return value
    expected = " or ".join(f"a {KINDS[p]} id ({p}-…)" for p in prefixes)
    raise UsageError(f"'{value}' is not {expected}")
