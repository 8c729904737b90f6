"""The server's settings, in one place: where it listens and keeps its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8642
DAY_S = 24 * 3600
# A SQLite database is its file and, while it is open, these beside it.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def default_data_dir() -> Path:
    return Path.home() / ".nerd" / "server"


@dataclass
class Settings:
    """How one server process runs; every replica of a deployment shares them."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    # Empty means SQLite at <data_dir>/nerd.db.
    database_url: str = ""
    lease_s: float = 30.0
    token_ttl_s: int = 900
    refresh_ttl_s: int = 30 * DAY_S
    issuer: str = "nerd"
    sweep_interval_s: float = 1.0
    # A worker silent this long (it heartbeats every few seconds) is listed as gone.
    worker_silence_s: float = 60.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'nerd.db'}"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, when the database is SQLite."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        return Path(self.database_url.removeprefix(prefix))

    @property
    def endpoint(self) -> str:
        """The URL clients reach this server at."""
        return f"http://{self.host}:{self.port}"

    @property
    def private_paths(self) -> list[Path]:
        """What tasks on this host must not see: the data folder (keys, the admin
        password, the objects), and a SQLite database kept outside it: its folder,
        and the files themselves for a worker that may not cover that folder."""
        paths = [self.data_dir.resolve()]
        database = self.sqlite_path
        if database is not None and not database.resolve().is_relative_to(paths[0]):
            real = database.resolve()
            files = [real.with_name(real.name + suffix) for suffix in SQLITE_SUFFIXES]
            paths += [real.parent, *files]
        return paths

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def admin_password_path(self) -> Path:
        return self.data_dir / "admin-password"
