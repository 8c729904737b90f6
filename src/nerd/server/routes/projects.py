"""Projects and the caller's own user: ``/projects``, ``/users/me``."""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Response
from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session

from nerd.errors import ConflictError, NotFoundError, PermissionDeniedError, UsageError
from nerd.models import Member, MemberAdd, Project, ProjectCreate, User
from nerd.server import db
from nerd.server.deps import CurrentUser, DbSession, ProjectAccess, UserCaller
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


@router.get("/projects/{project}/members")
def list_members(access: ProjectAccess, session: DbSession) -> list[Member]:
    rows = session.execute(
        select(db.User.username, db.Membership.created_at)
        .join(db.Membership, db.Membership.user_id == db.User.id)
        .where(db.Membership.project_id == access.project.id)
        .order_by(db.User.username)
    )
    return [Member(username=name, added_at=added) for name, added in rows]


@router.post("/projects/{project}/members", status_code=201)
def add_member(body: MemberAdd, access: ProjectAccess, session: DbSession) -> Member:
    """Make a user a member; any member of the project may do so."""
    user = _user_named(session, body.username)
    if session.get(db.Membership, (user.id, access.project.id)) is not None:
        raise ConflictError(f"'{user.username}' is already a member of {access.name}")
    membership = db.Membership(user_id=user.id, project_id=access.project.id)
    session.add(membership)
    session.commit()
    log.info(
        "member.added project=%s user=%s by=%s",
        access.name,
        user.username,
        access.user.username,
    )
    return Member(username=user.username, added_at=membership.created_at)


@router.delete("/projects/{project}/members/{username}", status_code=204)
def remove_member(username: str, access: ProjectAccess, session: DbSession) -> Response:
    """Leave a project, or (as an admin) remove anyone; the last member stays."""
    if username != access.user.username and not access.user.is_admin:
        raise PermissionDeniedError(
            f"only an admin may remove another member from {access.name}",
            hint="a member may remove only themselves",
        )
    user = _user_named(session, username)
    membership = session.get(db.Membership, (user.id, access.project.id))
    if membership is None:
        raise NotFoundError(f"'{username}' is not a member of {access.name}")
    count = session.scalar(
        select(func.count()).where(db.Membership.project_id == access.project.id)
    )
    if count == 1:
        raise ConflictError(f"'{username}' is the last member of {access.name}")
    session.delete(membership)
    session.commit()
    log.info(
        "member.removed project=%s user=%s by=%s",
        access.name,
        username,
        access.user.username,
    )
    return Response(status_code=204)


def _user_named(session: Session, username: str) -> db.User:
    user = session.scalars(select(db.User).where(db.User.username == username)).first()
    if user is None:
        raise NotFoundError(f"user '{username}' not found")
    return user


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
