"""``nerd project list`` and ``nerd project set NAME``."""

from __future__ import annotations

import click

from nerd import config
from nerd.cli.context import NerdGroup, get_state
from nerd.errors import NotFoundError


def register(cli: click.Group) -> None:
    cli.add_command(project_group)


@click.group("project", cls=NerdGroup)
def project_group() -> None:
    """Choose the project that commands work in."""


@project_group.command("list")
def list_projects() -> None:
    """List your projects; the current one is marked with *."""
    state = get_state()
    client = state.client()
    projects = client.auth.list_projects()
    current = client.project
    doc = [
        {"name": p.name, "created_at": p.created_at, "current": p.name == current}
        for p in projects
    ]
    rows = [{**row, "mark": "*" if row["current"] else ""} for row in doc]
    columns = [("mark", ""), ("name", "NAME"), ("created_at", "CREATED")]
    state.printer().table(columns, rows, doc)


@project_group.command("set")
@click.argument("name")
def set_project(name: str) -> None:
    """Use project NAME from now on (kept in the session file)."""
    state = get_state()
    names = [p.name for p in state.client().auth.list_projects()]
    if name not in names:
        raise NotFoundError(
            f"no project '{name}' among yours", hint="see `nerd project list`"
        )
    session = state.load_session()
    session.set_project(name)
    config.save_session(session)
    state.printer().message(f"Now using project '{name}'")
