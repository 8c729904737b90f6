"""Argument types shared by the commands: resource ids and ``KEY=VALUE`` pairs."""

from __future__ import annotations

from typing import Any

import click

from nerd import ids
from nerd.errors import UsageError


class IdType(click.ParamType):  # type: ignore[type-arg]
    """An id of one of the given kinds; any other kind is a usage error naming it."""

    def __init__(self, *prefixes: str) -> None:
        self.prefixes = prefixes
        self.name = "/".join(f"{prefix}-ID" for prefix in prefixes)

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        try:
            return ids.check_id(str(value), *self.prefixes)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


DATASET_ID = IdType("d")
QUEUE_ID = IdType("q")
TASK_ID = IdType("t")
WORKER_ID = IdType("wk")
DOWNLOADABLE_ID = IdType("d", "t", "q", "w")
QUEUE_OR_WORKLOAD_ID = IdType("q", "w")


def parse_env(
    pairs: tuple[str, ...], *, hint: str = "write each variable as -e NAME=value"
) -> dict[str, str]:
    """``K=V`` pairs as a mapping; no ``=``, no name or a name twice is an error."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"'{pair}' is not KEY=VALUE", hint=hint)
        if key in env:
            raise UsageError(f"'{key}' is given twice", hint=hint)
        env[key] = value
    return env


def split_queue_and_task(
    ctx: click.Context, values: tuple[str, ...]
) -> tuple[str | None, str]:
    """``[Q] T``: an optional queue id, then a task id."""
    if len(values) not in (1, 2):
        raise click.UsageError(
            f"expected [QUEUE_ID] TASK_ID, got {len(values)} arguments", ctx=ctx
        )
    task = TASK_ID.convert(values[-1], None, ctx)
    queue = QUEUE_ID.convert(values[0], None, ctx) if len(values) == 2 else None
    return queue, task
