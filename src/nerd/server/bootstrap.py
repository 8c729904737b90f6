"""First start: the admin user, its password file and the ``default`` project."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session, sessionmaker

from nerd.config import DEFAULT_ENDPOINT
from nerd.server import db
from nerd.server.passwords import hash_password, new_password

log = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class FirstStart:
    """What the first start made, to tell whoever started the server."""

    username: str
    password: str
    password_path: Path


def ensure_first_user(
    sessions: sessionmaker[Session], password_path: Path
) -> FirstStart | None:
    """Make the admin and the default project if there are no users yet."""
    with sessions() as session:
        if session.scalar(select(func.count()).select_from(db.User)):
            return None
        password = new_password()
        try:
            _create_admin(session, password)
        except exc.IntegrityError:
            # Another replica starting at the same moment made them first.
            return None
    write_secret_file(password_path, password + "\n")
    log.info("user.created user=%s project=%s", ADMIN_USERNAME, DEFAULT_PROJECT)
    return FirstStart(ADMIN_USERNAME, password, password_path)


def _create_admin(session: Session, password: str) -> None:
    admin = db.User(
        username=ADMIN_USERNAME, password_hash=hash_password(password), is_admin=True
    )
    project = db.Project(name=DEFAULT_PROJECT)
    session.add_all([admin, project])
    session.flush()
    session.add(db.Membership(user_id=admin.id, project_id=project.id))
    session.commit()


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def login_instructions(first: FirstStart, endpoint: str) -> str:
    text = (
        f"nerd: first start: created user '{first.username}' with password "
        f"{first.password}\n"
        f"nerd: (also in {first.password_path}); log in with:\n"
        f"    nerd login --username {first.username}   # server: {endpoint}\n"
    )
    if endpoint != DEFAULT_ENDPOINT:
        text += (
            "nerd: this is not the CLI's default address: first add\n"
            f'    "nerd_api_endpoint": "{endpoint}"\n'
            "nerd: to ~/.nerd/config.json (a JSON object)\n"
        )
    return text
