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


MAX_TIMEOUT_S = 30 * 24 * 3600.0

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
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    # Names of opaque secrets whose keys become env of the task's command.
    secret_env: list[str] = Field(default_factory=list)


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
    timeout_s: float | None = None
    secret_env: list[str] = Field(default_factory=list)


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


class RegisteredWorker(Worker):
    """The reply to a registration: the worker, and what its tasks must not see."""

    # The server's own data folder (its keys, its admin password), when the worker
    # runs on the server's host; empty from servers that predate it.
    private_paths: list[str] = []


class WorkerHeartbeatReply(Wire):
    stop_requested: bool


# --- workloads and secrets ------------------------------------------------------------

MIN_MEMORY_BYTES = 6 * 1024 * 1024


class WorkloadCreate(Wire):
    image: str = Field(min_length=1, max_length=512)
    instances: int = Field(default=1, ge=0, le=256)
    input_dataset: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pull_secret: str | None = None
    cpus: float | None = Field(default=None, gt=0, le=1024)
    memory_bytes: int | None = Field(default=None, ge=MIN_MEMORY_BYTES)


class WorkloadStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class Workload(Wire):
    """An image, an input dataset and N workers over one queue."""

    id: str
    project: str
    queue: str
    image: str
    instances: int
    input_dataset: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pull_secret: str | None = None
    cpus: float | None = None
    memory_bytes: int | None = None
    status: WorkloadStatus
    created_at: datetime
    stopped_at: datetime | None = None
    task_counts: dict[str, int] = Field(default_factory=dict)
    workers: list[Worker] = Field(default_factory=list)


class SecretType(StrEnum):
    OPAQUE = "opaque"
    REGISTRY = "registry"


REGISTRY_KEYS = ("server", "username", "password")


class SecretCreate(Wire):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
    type: SecretType = SecretType.OPAQUE
    data: dict[str, str] = Field(min_length=1)


class Secret(Wire):
    """A secret's name and keys; ``data`` holds the values only when asked."""

    name: str
    project: str
    type: SecretType
    keys: list[str]
    created_at: datetime
    data: dict[str, str] | None = None


class RegistryAuth(Wire):
    server: str
    username: str
    password: str


class TaskExecution(Wire):
    """How a worker must run the task it claimed: what only the run token may see."""

    image: str | None = None
    workload: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)
    registry: RegistryAuth | None = None
    cpus: float | None = None
    memory_bytes: int | None = None
    timeout_s: float | None = None


# --- project members (issue 4) ----------------------------------------------------


class MemberAdd(Wire):
    username: str


class Member(Wire):
    username: str
    added_at: datetime
