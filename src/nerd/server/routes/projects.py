"""Projects and the caller's own user: ``/projects``, ``/users/me``."""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter
from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from nerd.errors import ConflictError, PermissionDeniedError, UsageError
from nerd.models import Project, ProjectCreate, User
from nerd.server import db
from nerd.server.deps import CurrentUser, DbSession, UserCaller
from nerd.server.views import project_view, user_view

log = logging.getLogger(__name__)

router = APIRouter(tags=["projects"])

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@router.get("/projects")
def list_projects(
    _: UserCaller, user: CurrentUser, session: DbSession
) -> list[Project]:
    rows = session.scalars(
        select(db.Project)
        .join(db.Membership, db.Membership.project_id == db.Project.id)
        .where(db.Membership.user_id == user.id)
        .order_by(db.Project.name)
    )
    return [project_view(row) for row in rows]


@router.post("/projects", status_code=201)
def create_project(
    body: ProjectCreate, _: UserCaller, user: CurrentUser, session: DbSession
) -> Project:
    """Create a project (admins only); its creator becomes a member."""
    if not user.is_admin:
        raise PermissionDeniedError("only an admin may create projects")
    if not PROJECT_NAME.match(body.name):
        raise UsageError(
            f"'{body.name}' is not a project name",
            hint="use lowercase letters, digits and '-', at most 63 characters",
        )
    project = create_project_row(session, body.name, user)
    log.info("project.created project=%s user=%s", project.name, user.username)
    return project_view(project)


@router.get("/users/me")
def get_me(_: UserCaller, user: CurrentUser) -> User:
    return user_view(user)


def create_project_row(session: Session, name: str, member: db.User) -> db.Project:
    """Insert project ``name`` with ``member`` in it; ConflictError if it exists."""
    taken = session.scalars(select(db.Project).where(db.Project.name == name)).first()
    if taken is not None:
        raise ConflictError(f"project '{name}' already exists")
    project = db.Project(name=name)
    try:
        session.add(project)
        session.flush()
        session.add(db.Membership(user_id=member.id, project_id=project.id))
        session.commit()
    except exc.IntegrityError:
        # Another request made the same project between the check and the insert.
        raise ConflictError(f"project '{name}' already exists") from None
    return project
