"""The seams every router uses: the database session, the caller, project access.

Routes declare what they need with these typed aliases, e.g.
``def list_queues(access: ProjectAccess, session: DbSession) -> list[Queue]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from nerd.errors import AuthError, NotFoundError, PermissionDeniedError
from nerd.server import db
from nerd.server.keys import SigningKey
from nerd.server.settings import Settings
from nerd.server.tokens import AccessClaims, verify_access_token
from nerd.storage.base import ObjectStore

API_PREFIX = "/api/v1"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# What a worker token may do, as (method, route with every {parameter} as {}).
WORKER_ROUTES = frozenset(
    {
        ("POST", "/projects/{}/queues/{}/receive"),
        ("GET", "/projects/{}/queues/{}"),
        ("POST", "/projects/{}/tasks/{}/heartbeat"),
        ("POST", "/projects/{}/tasks/{}/success"),
        ("POST", "/projects/{}/tasks/{}/failure"),
        ("POST", "/projects/{}/tasks/{}/logs"),
        ("POST", "/projects/{}/tasks/{}/execution"),
        ("POST", "/projects/{}/workers"),
        ("POST", "/projects/{}/workers/{}/heartbeat"),
        ("DELETE", "/projects/{}/workers/{}"),
        ("POST", "/projects/{}/datasets"),
        ("GET", "/projects/{}/datasets"),
        ("GET", "/projects/{}/datasets/{}"),
        ("GET", "/projects/{}/datasets/{}/manifest"),
        ("POST", "/projects/{}/datasets/{}/commit"),
        ("POST", "/projects/{}/chunks/missing"),
        ("POST", "/projects/{}/chunks/locate"),
        ("PUT", "/projects/{}/packs/{}"),
        ("GET", "/projects/{}/packs/{}"),
    }
)
_PARAMETER = re.compile(r"\{[^}]*\}")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_signing_key(request: Request) -> SigningKey:
    key: SigningKey = request.app.state.signing_key
    return key


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; what the route did not commit is rolled back.

    Requests that may write get a session whose transactions hold SQLite's write
    lock from their start (see :mod:`nerd.server.db`).
    """
    is_read = request.method in READ_METHODS
    sessions = (
        request.app.state.sessions if is_read else request.app.state.write_sessions
    )
    with sessions() as session:
        yield session


def get_store(request: Request) -> ObjectStore:
    store: ObjectStore | None = getattr(request.app.state, "store", None)
    if store is None:
        from nerd.storage.local import LocalStore

        store = LocalStore(root=get_settings(request).objects_dir)
        request.app.state.store = store
    return store


AppSettings = Annotated[Settings, Depends(get_settings)]
DbSession = Annotated[Session, Depends(get_db)]
Store = Annotated[ObjectStore, Depends(get_store)]
Key = Annotated[SigningKey, Depends(get_signing_key)]


def get_caller(
    settings: AppSettings,
    key: Key,
    authorization: Annotated[str | None, Header()] = None,
) -> AccessClaims:
    """The verified claims of the request's bearer token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(
            "not logged in: the request carries no bearer token",
            hint="log in with `nerd login`",
        )
    return verify_access_token(token.strip(), key.public_key, issuer=settings.issuer)


Caller = Annotated[AccessClaims, Depends(get_caller)]


def get_user_caller(caller: Caller) -> AccessClaims:
    """The caller, who must hold a user token (not a worker one)."""
    if caller.kind != "user":
        raise PermissionDeniedError("a worker token may not do this; use a user login")
    return caller


UserCaller = Annotated[AccessClaims, Depends(get_user_caller)]


def get_user(caller: Caller, session: DbSession) -> db.User:
    """The caller's user row; AuthError if it is gone or disabled."""
    user = session.scalars(
        select(db.User).where(db.User.username == caller.username)
    ).first()
    if user is None or user.is_disabled:
        raise AuthError(f"user '{caller.username}' cannot log in")
    return user


CurrentUser = Annotated[db.User, Depends(get_user)]


@dataclass(frozen=True)
class ProjectContext:
    """A project the caller may use in this request, and who the caller is."""

    project: db.Project
    user: db.User
    caller: AccessClaims

    @property
    def name(self) -> str:
        return self.project.name


def project_access(
    project: str, request: Request, caller: Caller, session: DbSession
) -> ProjectContext:
    """Resolve ``{project}``: 404 unless the caller is a member (and, for a worker
    token, it is the token's project); 403 for a worker token on a user-only route."""
    is_other_project = caller.kind == "worker" and caller.project != project
    found = None if is_other_project else member_of(session, project, caller.username)
    if found is None:
        raise NotFoundError(f"project '{project}' not found")
    if caller.kind == "worker" and not _is_worker_route(request):
        raise PermissionDeniedError(
            f"a worker token may not use {request.method} {_route_of(request)}"
        )
    return ProjectContext(project=found[0], user=found[1], caller=caller)


ProjectAccess = Annotated[ProjectContext, Depends(project_access)]


def member_of(
    session: Session, project: str, username: str
) -> tuple[db.Project, db.User] | None:
    """The project and the user, if ``username`` is an enabled member of it."""
    row = session.execute(
        select(db.Project, db.User)
        .join(db.Membership, db.Membership.project_id == db.Project.id)
        .join(db.User, db.User.id == db.Membership.user_id)
        .where(db.Project.name == project, db.User.username == username)
        .where(db.User.is_disabled.is_(False))
    ).first()
    return None if row is None else (row[0], row[1])


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path_format", request.url.path)
    return str(path).removeprefix(API_PREFIX)


def _is_worker_route(request: Request) -> bool:
    pattern = _PARAMETER.sub("{}", _route_of(request))
    return (request.method, pattern) in WORKER_ROUTES
