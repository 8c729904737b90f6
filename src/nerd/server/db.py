"""The server's database: SQLAlchemy 2 models and the engine that reaches them.

One schema for SQLite (embedded) and PostgreSQL (scale-out); ``migrations/`` creates
it. Ids are the wire ids (``t-…``, ``q-…``); users and projects have integer keys and
are named on the wire by ``username`` and ``name``. Times are stored as UTC.

SQLite cannot upgrade a read transaction to a write once another connection has
written since it began (``SQLITE_BUSY_SNAPSHOT``, with no waiting). So a transaction
that may write starts with the write lock (``BEGIN IMMEDIATE``): requests other than
GET get sessions from ``make_sessionmaker(engine, is_write=True)``, and other code
calls :func:`begin_write` first. Such a transaction must not wait on the network
(e.g. stream a request body) while it holds the lock: commit before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

IMMEDIATE_OPTION = "nerd_begin_immediate"
SQLITE_BUSY_TIMEOUT_S = 30
# The first key of PostgreSQL advisory locks on a project's chunks ("NC").
CHUNK_LOCK_SPACE = 0x4E43
ID_LENGTH = 40
SHA256_LENGTH = 64

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, also on SQLite, which stores no zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id() -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=True)


def _project_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(UtcDateTime, default=utcnow)


# --- auth


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = _created()


class RefreshToken(Base):
    """A refresh secret, kept as its SHA-256; ``kind``: ``user`` or ``worker``."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- datasets


class Dataset(Base):
    """A directory snapshot: ``uploading`` until its manifest is committed."""

    __tablename__ = "datasets"

    id: Mapped[str] = _id()
    project_id: Mapped[int] = _project_fk()
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="uploading")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # The task whose output this is. No foreign key: tasks name datasets too.
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    created_at: Mapped[datetime] = _created()
    ready_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Of the manifest as the client sent it: an unchanged re-upload sends the same.
    manifest_sha256: Mapped[str | None] = mapped_column(String(SHA256_LENGTH))

    __table_args__ = (
        Index("ix_datasets_project_manifest", "project_id", "manifest_sha256"),
    )


class Pack(Base):
    """One stored object holding many chunks, named by the SHA-256 of its bytes."""

    __tablename__ = "packs"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(SHA256_LENGTH), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()


class Chunk(Base):
    """Where a project's chunk sits: ``size_bytes`` at ``offset`` in a pack."""

    __tablename__ = "chunks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["project_id", "pack_id"],
            ["packs.project_id", "packs.id"],
            ondelete="CASCADE",
            name="fk_chunks_pack",
        ),
        Index("ix_chunks_pack", "project_id", "pack_id"),
    )

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), primary_key=True)
    pack_id: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    offset: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)


# --- queues, tasks, runs, workers


class Queue(Base):
    __tablename__ = "queues"

    id: Mapped[str] = _id()
    project_id: Mapped[int] = _project_fk()
    input_dataset_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = _created()


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_claim", "queue_id", "status", "created_at"),)

    id: Mapped[str] = _id()
    project_id: Mapped[int] = _project_fk()
    queue_id: Mapped[str] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    argv: Mapped[list[str]] = mapped_column(JSON)
    env: Mapped[dict[str, str]] = mapped_column(JSON)
    stdin_b64: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    max_attempts: Mapped[int] = mapped_column(Integer)
    num_dispatches: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    output_dataset_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    worker_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    # No foreign key: runs point at their task, and one pair of arrows is enough.
    current_run_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Added by migration 0002_workloads.
    timeout_s: Mapped[float | None] = mapped_column(Float)
    secret_env: Mapped[list[str] | None] = mapped_column(JSON)


class Run(Base):
    """One dispatch of a task: ``running`` until it succeeds, fails or expires."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_lease", "status", "lease_expires_at"),)

    id: Mapped[str] = _id()
    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    token_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    lease_expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime] = _created()
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)


class RunLog(Base):
    __tablename__ = "run_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(8))
    data: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = _created()


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = _id()
    project_id: Mapped[int] = _project_fk()
    queue_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="idle")
    current_task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()


# --- engine and sessions


def make_engine(url: str) -> Engine:
    """An engine for a ``sqlite:///…`` or ``postgresql://…`` URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # pysqlite's own transaction handling never emits BEGIN IMMEDIATE; switch it off
    # and let SQLAlchemy's "begin" event say how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    is_immediate = connection.get_execution_options().get(IMMEDIATE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if is_immediate else "BEGIN")


def make_sessionmaker(
    engine: Engine, *, is_write: bool = False
) -> sessionmaker[Session]:
    """Sessions on ``engine``; with ``is_write``, each transaction takes the write
    lock when it starts (SQLite), so that it never fails to upgrade a read to a write.
    """
    if is_write:
        engine = engine.execution_options(**{IMMEDIATE_OPTION: True})
    return sessionmaker(engine, expire_on_commit=False)


def begin_write(session: Session) -> None:
    """End the session's read transaction and start one that will write.

    On SQLite this takes the database's write lock now, so that what the transaction
    reads cannot change before it writes; PostgreSQL callers lock rows instead.
    """
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={IMMEDIATE_OPTION: True})


def lock_project_chunks(session: Session, project_id: int) -> None:
    """Hold the project's chunk lock until the transaction ends.

    Committing a manifest and collecting packs take it, so that a pack is never
    collected between a commit's check that its chunks are held and the commit.
    On SQLite the write lock of :func:`begin_write` already does this.
    """
    if is_postgres(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": CHUNK_LOCK_SPACE, "key": project_id},
        )


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# --- browser logins and failed passwords (migration 0002_auth)


class OAuthCode(Base):
    """A one-time authorization code of the browser login, kept as its SHA-256.

    It is bound to the client, the redirect URI and the PKCE challenge it was made
    for; redeeming it sets ``used_at``, so a second try fails.
    """

    __tablename__ = "oauth_codes"

    code_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LoginFailure(Base):
    """Failed password logins of one username (known or not) in a row."""

    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- workloads and secrets (migration 0002_workloads)


class Workload(Base):
    """A queue plus what runs its tasks: an image, an input dataset, N workers."""

    __tablename__ = "workloads"

    id: Mapped[str] = _id()
    project_id: Mapped[int] = _project_fk()
    queue_id: Mapped[str] = mapped_column(
        ForeignKey("queues.id", ondelete="CASCADE"), index=True
    )
    image: Mapped[str] = mapped_column(String(512))
    instances: Mapped[int] = mapped_column(Integer)
    input_dataset_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    env: Mapped[dict[str, str]] = mapped_column(JSON)
    pull_secret: Mapped[str | None] = mapped_column(String(128))
    cpus: Mapped[float | None] = mapped_column(Float)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[datetime] = _created()
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Secret(Base):
    """A project's secret: its values sealed with the server's secrets key."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    keys: Mapped[list[str]] = mapped_column(JSON)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
