"""Secrets of a project: ``/projects/{project}/secrets/…``.

Values are sealed at rest (:mod:`nerd.server.secrets_box`) and never leave the server
unless a user asks for them with ``?reveal=true``; a worker gets the ones its run needs
through ``POST …/tasks/{t}/execution`` (see :mod:`nerd.server.routes.workloads`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from nerd.errors import ConflictError, NotFoundError, UsageError
from nerd.models import REGISTRY_KEYS, Secret, SecretCreate, SecretType
from nerd.server import db
from nerd.server.deps import AppSettings, DbSession, ProjectAccess
from nerd.server.secrets_box import SecretsBox

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects/{project}/secrets", tags=["secrets"])

MAX_SECRET_BYTES = 64 * 1024


def get_box(request: Request, settings: AppSettings) -> SecretsBox:
    box: SecretsBox | None = getattr(request.app.state, "secrets_box", None)
    if box is None:
        box = SecretsBox.in_folder(settings.keys_dir)
        request.app.state.secrets_box = box
    return box


Box = Annotated[SecretsBox, Depends(get_box)]


@router.post("", status_code=201)
def create_secret(
    body: SecretCreate, access: ProjectAccess, session: DbSession, box: Box
) -> Secret:
    """Seal and keep a secret; its values are not sent back."""
    data = _checked_data(body)
    if _find(session, access.project, body.name) is not None:
        raise ConflictError(f"secret '{body.name}' already exists")
    row = db.Secret(
        project_id=access.project.id,
        name=body.name,
        type=body.type.value,
        keys=sorted(data),
        sealed=box.seal(data, project=access.name, name=body.name),
    )
    session.add(row)
    session.commit()
    log.info("secret.created secret=%s project=%s", row.name, access.name)
    return secret_view(row, access.name)


@router.get("")
def list_secrets(access: ProjectAccess, session: DbSession) -> list[Secret]:
    rows = session.scalars(
        select(db.Secret)
        .where(db.Secret.project_id == access.project.id)
        .order_by(db.Secret.name)
    )
    return [secret_view(row, access.name) for row in rows]


@router.get("/{name}")
def describe_secret(
    name: str,
    access: ProjectAccess,
    session: DbSession,
    box: Box,
    reveal: Annotated[bool, Query()] = False,
) -> Secret:
    """A secret's keys; its values too with ``?reveal=true``."""
    row = get_secret(session, access.project, name)
    data = box.open(row.sealed, project=access.name, name=row.name) if reveal else None
    return secret_view(row, access.name, data)


@router.delete("/{name}", status_code=204)
def delete_secret(name: str, access: ProjectAccess, session: DbSession) -> Response:
    row = get_secret(session, access.project, name)
    session.delete(row)
    session.commit()
    log.info("secret.deleted secret=%s project=%s", row.name, access.name)
    return Response(status_code=204)


def get_secret(session: Session, project: db.Project, name: str) -> db.Secret:
    row = _find(session, project, name)
    if row is None:
        raise NotFoundError(f"secret '{name}' not found in project '{project.name}'")
    return row


def check_secret_env(session: Session, project: db.Project, names: list[str]) -> None:
    """Each name must be an opaque secret of the project, to be given as env."""
    for name in names:
        if get_secret(session, project, name).type != SecretType.OPAQUE.value:
            raise UsageError(f"secret '{name}' is a registry secret, not env")


def open_secret(
    session: Session, box: SecretsBox, project: db.Project, name: str
) -> tuple[db.Secret, dict[str, str]]:
    """A secret's row and its values."""
    row = get_secret(session, project, name)
    return row, box.open(row.sealed, project=project.name, name=row.name)


def secret_view(
    row: db.Secret, project: str, data: dict[str, str] | None = None
) -> Secret:
    return Secret(
        name=row.name,
        project=project,
        type=SecretType(row.type),
        keys=list(row.keys),
        created_at=row.created_at,
        data=data,
    )


def _find(session: Session, project: db.Project, name: str) -> db.Secret | None:
    return session.scalars(
        select(db.Secret).where(
            db.Secret.project_id == project.id, db.Secret.name == name
        )
    ).first()


def _checked_data(body: SecretCreate) -> dict[str, str]:
    size_bytes = sum(len(k) + len(v) for k, v in body.data.items())
    if size_bytes > MAX_SECRET_BYTES:
        raise UsageError(
            f"secret '{body.name}' is larger than {MAX_SECRET_BYTES} bytes"
        )
    if body.type != SecretType.REGISTRY:
        return dict(body.data)
    data = {"server": body.name, **body.data}
    missing = [key for key in ("username", "password") if not data.get(key)]
    unknown = sorted(set(data) - set(REGISTRY_KEYS))
    if missing or unknown:
        raise UsageError(
            f"registry secret '{body.name}' needs a username and a password"
            + (f"; unknown keys: {', '.join(unknown)}" if unknown else ""),
            hint="nerd secret create REGISTRY --type registry -u USER --password P",
        )
    return data
