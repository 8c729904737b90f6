"""Wire schemas: the JSON bodies the server and the SDK exchange.

Every route in ``docs/api.md`` takes and returns one of these. Times are ISO 8601 UTC
strings; sizes are bytes; ids carry their kind prefix.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Wire(BaseModel):
    """Base of every wire schema: unknown keys are ignored, for old peers."""

    model_config = ConfigDict(extra="ignore")


# --- auth -----------------------------------------------------------------------------


class PublicKey(Wire):
    public_key: str
    fingerprint: str
    issuer: str


class PasswordLogin(Wire):
    username: str
    password: str


class RefreshRequest(Wire):
    refresh_token: str


class TokenPair(Wire):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in_s: int


class WorkerTokenRequest(Wire):
    project: str


class Project(Wire):
    name: str
    created_at: datetime


class ProjectCreate(Wire):
    name: str


class User(Wire):
    username: str
    is_admin: bool
    is_disabled: bool = False
    created_at: datetime


# --- datasets -------------------------------------------------------------------------


class DatasetStatus(StrEnum):
    UPLOADING = "uploading"
    READY = "ready"


class DatasetCreate(Wire):
    name: str | None = None


class Dataset(Wire):
    id: str
    project: str
    name: str | None = None
    status: DatasetStatus
    size_bytes: int = 0
    file_count: int = 0
    chunk_count: int = 0
    created_at: datetime
    ready_at: datetime | None = None
    # The task whose output this dataset is, if any.
    task_id: str | None = None


class ChunkRef(Wire):
    """A chunk named by the SHA-256 of its bytes (lowercase hex) and its length."""

    sha256: str
    size_bytes: int


class ChunkQuery(Wire):
    chunks: list[str] = Field(description="SHA-256 hex names of chunks")


class MissingChunks(Wire):
    missing: list[str]


class ChunkLocation(Wire):
    sha256: str
    pack: str
    offset: int
    size_bytes: int


class ChunkLocations(Wire):
    locations: list[ChunkLocation]


class PackStored(Wire):
    pack: str
    chunk_count: int
    size_bytes: int


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


class ManifestEntry(Wire):
    """One file, folder or link, at a POSIX path relative to the dataset root."""

    path: str
    type: EntryType
    mode: int = Field(description="permission bits, e.g. 0o644")
    mtime_ns: int
    size_bytes: int = 0
    chunks: list[ChunkRef] = Field(default_factory=list)
    target: str | None = None


class Manifest(Wire):
    version: Literal[1] = 1
    entries: list[ManifestEntry]


# --- queues, tasks, runs, workers -----------------------------------------------------


class QueueCreate(Wire):
    input_dataset: str | None = None


class Queue(Wire):
    id: str
    project: str
    input_dataset: str | None = None
    created_at: datetime
    task_counts: dict[str, int] = Field(default_factory=dict)


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.STOPPED}
)


class TaskCreate(Wire):
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    stdin_b64: str | None = Field(
        default=None, description="base64, at most 128 KiB raw"
    )
    max_attempts: int = Field(default=3, ge=1, le=100)


class Task(Wire):
    id: str
    queue: str
    project: str
    argv: list[str]
    env: dict[str, str]
    status: TaskStatus
    max_attempts: int
    num_dispatches: int
    exit_code: int | None = None
    result: str | None = None
    message: str | None = None
    output_dataset: str | None = None
    worker: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ReceiveRequest(Wire):
    worker: str
    wait_s: float = Field(default=20.0, ge=0, le=60)


class ReceivedTask(Wire):
    """What a worker gets when it claims a task: the task and the token of its run."""

    task: Task
    run: str
    run_token: str
    lease_s: float
    input_dataset: str | None = None
    stdin_b64: str | None = None


class RunReport(Wire):
    run_token: str


class Heartbeat(RunReport):
    pass


class HeartbeatReply(Wire):
    lease_s: float


class RunSuccess(RunReport):
    result: str = ""
    output_dataset: str | None = None


class RunFailure(RunReport):
    exit_code: int
    message: str = ""


class LogStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class LogAppend(RunReport):
    stream: LogStream
    data: str


class LogLine(Wire):
    run: str
    stream: LogStream
    data: str
    at: datetime


class TaskLogs(Wire):
    task: str
    entries: list[LogLine]


class WorkerRegister(Wire):
    queue: str
    host: str
    pid: int
    runtime: str = "process"


class WorkerStatus(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    GONE = "gone"


class Worker(Wire):
    id: str
    project: str
    queue: str
    host: str
    pid: int
    runtime: str
    status: WorkerStatus
    current_task: str | None = None
    started_at: datetime
    last_seen_at: datetime


class WorkerHeartbeatReply(Wire):
    stop_requested: bool
