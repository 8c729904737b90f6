"""``nerd server`` and ``nerd admin …``: run the server, manage users in its database.

The nerd CLI registers these lazily, so that ``nerd --help`` never imports the server.
``python -m nerd.server`` runs :func:`server` on its own.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import sqlalchemy
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from nerd import errors
from nerd.cli.context import CONTEXT_SETTINGS, NerdGroup, get_state
from nerd.server import db
from nerd.server.bootstrap import ensure_first_user, login_instructions
from nerd.server.migrate import upgrade_database
from nerd.server.passwords import hash_password, new_password
from nerd.server.settings import DAY_S, DEFAULT_PORT, Settings, default_data_dir

F = TypeVar("F", bound=Callable[..., Any])

USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _database_options(func: F) -> F:
    func = click.option(
        "--database-url",
        envvar="NERD_SERVER_DATABASE_URL",
        default="",
        help="sqlite:///… or postgresql://… [default: SQLite in the data folder]",
    )(func)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="NERD_SERVER_DATA_DIR",
        default=default_data_dir,
        show_default="~/.nerd/server",
        help="Where the server keeps its database, keys and objects.",
    )(func)


@click.command("server", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--host", envvar="NERD_SERVER_HOST", default="127.0.0.1", show_default=True
)
@click.option(
    "--port",
    envvar="NERD_SERVER_PORT",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
)
@_database_options
@click.option(
    "--lease-s",
    envvar="NERD_SERVER_LEASE_S",
    type=float,
    default=30.0,
    show_default=True,
    help="How long a run lives without a heartbeat.",
)
@click.option(
    "--token-ttl-s",
    envvar="NERD_SERVER_TOKEN_TTL_S",
    type=int,
    default=900,
    show_default=True,
    help="Lifetime of access tokens.",
)
@click.option(
    "--refresh-ttl-s",
    envvar="NERD_SERVER_REFRESH_TTL_S",
    type=click.IntRange(min=1),
    default=30 * DAY_S,
    show_default=True,
    help="Lifetime of refresh tokens (sessions and worker tokens).",
)
@click.option(
    "--worker-silence-s",
    type=float,
    default=60.0,
    show_default=True,
    help="List a worker as gone after this long without a heartbeat.",
)
def server(
    host: str,
    port: int,
    data_dir: Path,
    database_url: str,
    lease_s: float,
    token_ttl_s: int,
    refresh_ttl_s: int,
    worker_silence_s: float,
) -> None:
    """Run the nerd server: the API, the queue and the dataset store."""
    import uvicorn

    from nerd.server.app import create_app

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    settings = Settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        lease_s=lease_s,
        token_ttl_s=token_ttl_s,
        refresh_ttl_s=refresh_ttl_s,
        worker_silence_s=worker_silence_s,
    )
    listener = _listen(host, port)
    try:
        app = create_app(settings)
    except sqlalchemy.exc.OperationalError as exc:
        listener.close()
        raise _database_error(settings, exc) from exc
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before anything is set up."""
    try:
        return socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        raise errors.UsageError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno or 0)}",
            hint="another program may have the port; choose one with --port",
        ) from None


@click.group("admin", cls=NerdGroup)
def admin() -> None:
    """Manage the server's users, working on its database directly."""


@admin.group("user")
def user() -> None:
    """Users who can log in."""


@user.command("create")
@click.argument("username")
@click.option("--admin", "is_admin", is_flag=True, help="May create projects.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option(
    "--project",
    "projects",
    multiple=True,
    default=["default"],
    show_default=True,
    help="A project to make the user a member of.",
)
@_database_options
def create_user(
    username: str,
    is_admin: bool,
    password_stdin: bool,
    projects: tuple[str, ...],
    data_dir: Path,
    database_url: str,
) -> None:
    """Create a user; prints the password made for it unless one is given."""
    _check_username(username)
    password = _read_password() if password_stdin else new_password()
    settings = Settings(data_dir=data_dir, database_url=database_url)
    with _open_database(settings) as sessions, sessions() as session:
        _insert_user(session, username, password, is_admin, projects)
    click.echo(f"nerd: created user '{username}'", err=True)
    if not password_stdin:
        click.echo(password)


@user.command("list")
@_database_options
def list_users(data_dir: Path, database_url: str) -> None:
    """List the users: name, admin or not, disabled or not, projects."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    with _open_database(settings, must_exist=True) as sessions, sessions() as session:
        users = session.scalars(select(db.User).order_by(db.User.username)).all()
        doc = [
            {
                "username": row.username,
                "is_admin": row.is_admin,
                "is_disabled": row.is_disabled,
                "projects": _project_names(session, row),
            }
            for row in users
        ]
    rows = [
        {
            "username": user["username"],
            "is_admin": _yes_no(user["is_admin"]),
            "is_disabled": _yes_no(user["is_disabled"]),
            "projects": ",".join(cast(list[str], user["projects"])) or "-",
        }
        for user in doc
    ]
    columns = [
        ("username", "USERNAME"),
        ("is_admin", "ADMIN"),
        ("is_disabled", "DISABLED"),
        ("projects", "PROJECTS"),
    ]
    get_state().printer().table(columns, rows, doc)


def _yes_no(value: object) -> str:
    return "yes" if value else "no"


@user.command("disable")
@click.argument("username")
@_database_options
def disable_user(username: str, data_dir: Path, database_url: str) -> None:
    """Disable a user: no more logins, and every session and worker token ends."""
    _set_disabled(
        username, True, Settings(data_dir=data_dir, database_url=database_url)
    )
    click.echo(f"nerd: disabled user '{username}' and revoked its sessions", err=True)


@user.command("enable")
@click.argument("username")
@_database_options
def enable_user(username: str, data_dir: Path, database_url: str) -> None:
    """Let a disabled user log in again."""
    _set_disabled(
        username, False, Settings(data_dir=data_dir, database_url=database_url)
    )
    click.echo(f"nerd: enabled user '{username}'", err=True)


def _set_disabled(username: str, is_disabled: bool, settings: Settings) -> None:
    with _open_database(settings, must_exist=True) as sessions, sessions() as session:
        row = session.scalars(select(db.User).where(db.User.username == username))
        found = row.first()
        if found is None:
            raise errors.NotFoundError(f"user '{username}' not found")
        found.is_disabled = is_disabled
        if is_disabled:
            session.execute(
                sqlalchemy.update(db.RefreshToken)
                .where(db.RefreshToken.user_id == found.id)
                .where(db.RefreshToken.revoked_at.is_(None))
                .values(revoked_at=db.utcnow())
            )
        session.commit()


def _database_error(
    settings: Settings, exc: sqlalchemy.exc.OperationalError
) -> errors.NerdError:
    url = sqlalchemy.make_url(settings.database_url).render_as_string(
        hide_password=True
    )
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return errors.NerdError(
        f"cannot open the database {url}: {reason}",
        hint="check --database-url, and that the database server is running",
    )


def _check_username(username: str) -> None:
    if not username or len(username) > 64 or not set(username) <= USERNAME_CHARS:
        raise errors.UsageError(
            f"'{username}' is not a username",
            hint="use lowercase letters, digits, '_', '.' and '-'",
        )


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise errors.UsageError("no password on stdin")
    return password


@contextmanager
def _open_database(
    settings: Settings, *, must_exist: bool = False
) -> Iterator[sessionmaker[Session]]:
    """The server's database, migrated and with its first user, for one command.

    ``must_exist``: a command that only reads or changes users refuses to make a
    new server in a folder that holds none (a mistyped --data-dir).
    """
    if must_exist:
        _check_database_exists(settings)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = db.make_engine(settings.database_url)
    try:
        _migrate(settings, engine)
        sessions = db.make_sessionmaker(engine)
        first = ensure_first_user(sessions, settings.admin_password_path)
        if first is not None:
            click.echo(login_instructions(first, settings.endpoint), err=True, nl=False)
        yield sessions
    finally:
        engine.dispose()


def _check_database_exists(settings: Settings) -> None:
    path = settings.sqlite_path
    if path is not None and not path.exists():
        raise errors.NotFoundError(
            f"no nerd server database at {path}",
            hint="give the --data-dir (or --database-url) of a server that has run",
        )


def _migrate(settings: Settings, engine: sqlalchemy.Engine) -> None:
    try:
        upgrade_database(engine)
    except sqlalchemy.exc.OperationalError as exc:
        raise _database_error(settings, exc) from exc


def _insert_user(
    session: Session,
    username: str,
    password: str,
    is_admin: bool,
    projects: tuple[str, ...],
) -> None:
    if session.scalars(select(db.User).where(db.User.username == username)).first():
        raise errors.ConflictError(f"user '{username}' already exists")
    user_row = db.User(
        username=username, password_hash=hash_password(password), is_admin=is_admin
    )
    session.add(user_row)
    session.flush()
    for name in projects:
        project = session.scalars(select(db.Project).where(db.Project.name == name))
        found = project.first()
        if found is None:
            raise errors.NotFoundError(f"project '{name}' not found")
        session.add(db.Membership(user_id=user_row.id, project_id=found.id))
    session.commit()


def _project_names(session: Session, user_row: db.User) -> list[str]:
    return list(
        session.scalars(
            select(db.Project.name)
            .join(db.Membership, db.Membership.project_id == db.Project.id)
            .where(db.Membership.user_id == user_row.id)
            .order_by(db.Project.name)
        )
    )


def run(command: click.Command) -> None:
    """Run ``command`` as a program: nerd's errors as one line and their exit code."""
    try:
        command.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except errors.NerdError as exc:
        click.echo(f"nerd: error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"nerd: hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(errors.EXIT_INTERRUPTED)


# Adds ``admin check`` and ``admin gc``; it needs the helpers above, so it comes last.
import nerd.server.admin_data  # noqa: E402, F401
