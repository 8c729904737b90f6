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
    """Choose the project that commands work in; create projects, add members."""


@project_group.command("create")
@click.argument("name")
def create_project(name: str) -> None:
    """Create project NAME (admins only); you become its first member."""
    state = get_state()
    project = state.client().auth.create_project(name)
    doc = {"name": project.name, "created_at": project.created_at}
    state.printer().record([("name", "NAME"), ("created_at", "CREATED")], doc, doc)


@project_group.group("member", cls=NerdGroup)
def member_group() -> None:
    """The members of the current project (or --project)."""


PROJECT_OPTION = click.option(
    "-p", "--project", help="The project [env NERD_PROJECT; default: the current one]."
)


@member_group.command("list")
@PROJECT_OPTION
def list_members(project: str | None) -> None:
    """List the members of the project."""
    state = get_state()
    client = state.client(project)
    members = client.auth.list_members(client.project)
    doc = [{"username": m.username, "added_at": m.added_at} for m in members]
    columns = [("username", "USERNAME"), ("added_at", "ADDED")]
    state.printer().table(columns, doc, doc)


@member_group.command("add")
@click.argument("username")
@PROJECT_OPTION
def add_member(username: str, project: str | None) -> None:
    """Make USERNAME a member of the project."""
    state = get_state()
    client = state.client(project)
    client.auth.add_member(client.project, username)
    printer = state.printer()
    printer.message(f"Added '{username}' to project '{client.project}'")
    printer.outcome({"project": client.project, "added": username})


@member_group.command("remove")
@click.argument("username")
@PROJECT_OPTION
def remove_member(username: str, project: str | None) -> None:
    """Remove USERNAME from the project."""
    state = get_state()
    client = state.client(project)
    client.auth.remove_member(client.project, username)
    printer = state.printer()
    printer.message(f"Removed '{username}' from project '{client.project}'")
    printer.outcome({"project": client.project, "removed": username})


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
    printer = state.printer()
    printer.message(f"Now using project '{name}'")
    printer.outcome({"project": name})
