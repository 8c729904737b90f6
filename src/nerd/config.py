"""The config file ``~/.nerd/config.json`` and the session file ``session.json``.

Both are JSON documents that several generations of the CLI wrote. Missing keys take
defaults, unknown keys are kept (and written back untouched), and a malformed file is a
:class:`~nerd.errors.ConfigError` naming the file and the line, never silently replaced.

Where the config comes from, first match wins: an explicit path (``--config-file``),
``NERD_CONFIG_JSON`` (the whole config as JSON), ``NERD_CONFIG_FILE``, ``CONFIG``, then
``~/.nerd/config.json``. The session file is ``--session-file``,
``NERD_SESSION_FILE`` or ``~/.nerd/session.json``. Both are written atomically: a
temporary file in the same folder, fsynced, renamed over the old one, and the folder
fsynced.

This module imports nothing heavy: ``nerd --help`` loads it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerd.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:8642"
DEFAULT_OAUTH_LOCALSERVER = "localhost:9876"
DEFAULT_LOG_FILE = "~/.nerd/log"
# The ``iss`` of the server's tokens, unless a login recorded another one.
DEFAULT_ISSUER = "nerd"

CONFIG_ENV_JSON = "NERD_CONFIG_JSON"
CONFIG_ENV_FILES = ("NERD_CONFIG_FILE", "CONFIG")
SESSION_ENV_FILE = "NERD_SESSION_FILE"

SESSION_SHAPE: dict[str, dict[str, str]] = {
    "oauth": {
        "access_token": "",
        "refresh_token": "",
        "expiration": "",
        "scope": "",
        "token_type": "",
    },
    "jwt": {"token": "", "refresh_token": ""},
    "project": {"name": "", "aws_region": ""},
}


def nerd_home() -> Path:
    """The folder that holds nerd's per-user files (``~/.nerd``)."""
    return Path.home() / ".nerd"


# --- the config file ------------------------------------------------------------------


@dataclass
class AuthConfig:
    """The ``auth`` section: where to log in, which key signs the tokens, and the
    issuer they must name."""

    api_endpoint: str = DEFAULT_ENDPOINT
    public_key: str = ""
    issuer: str = DEFAULT_ISSUER
    client_id: str = ""
    oauth_localserver: str = DEFAULT_OAUTH_LOCALSERVER
    oauth_success_url: str = ""


@dataclass
class Config:
    """The parsed config. ``raw`` is the whole document, unknown keys included."""

    path: Path | None
    raw: dict[str, Any] = field(default_factory=dict)
    auth: AuthConfig = field(default_factory=AuthConfig)
    nerd_api_endpoint: str = DEFAULT_ENDPOINT
    is_logging_enabled: bool = False
    log_file: Path = field(default_factory=lambda: Path(DEFAULT_LOG_FILE).expanduser())

    @property
    def source(self) -> str:
        """Where the config was read from, for messages."""
        return str(self.path) if self.path else CONFIG_ENV_JSON

    def set_public_key(self, public_key: str, *, issuer: str = DEFAULT_ISSUER) -> None:
        """Remember the server's key and issuer, in the parsed view and the raw one."""
        self.auth.public_key, self.auth.issuer = public_key, issuer
        section = self.raw.get("auth")
        if not isinstance(section, dict):
            section = self.raw["auth"] = {}
        section["public_key"] = public_key
        section["issuer"] = issuer


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, or None when ``NERD_CONFIG_JSON`` holds the config."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CONFIG_ENV_JSON):
        return None
    for name in CONFIG_ENV_FILES:
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    return nerd_home() / "config.json"


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read the config; a missing file is the defaults, a malformed one an error."""
    path = config_path(explicit)
    if path is None:
        raw = _parse_json(os.environ[CONFIG_ENV_JSON], CONFIG_ENV_JSON)
    else:
        raw = _read_json_file(path)
    return _config_from_raw(path, raw)


def save_config(config: Config) -> None:
    """Write the config back atomically, unknown keys included."""
    if config.path is None:
        raise ConfigError(
            f"cannot save the config: it was given in {CONFIG_ENV_JSON}",
            hint=f"add auth.public_key to {CONFIG_ENV_JSON} yourself",
        )
    mode = _existing_mode(config.path, default=0o600)
    write_json_atomic(config.path, config.raw, mode=mode)
    log.debug("config.saved path=%s", config.path)


def _config_from_raw(path: Path | None, raw: dict[str, Any]) -> Config:
    where = str(path) if path else CONFIG_ENV_JSON
    auth_raw = _section(raw, "auth", where)
    logging_raw = _section(raw, "logging", where)
    # One server usually serves both APIs: naming only the batch one is enough.
    endpoint = _string(raw, "nerd_api_endpoint", where, DEFAULT_ENDPOINT)
    auth = AuthConfig(
        api_endpoint=_string(auth_raw, "api_endpoint", where, endpoint),
        public_key=_string(auth_raw, "public_key", where, ""),
        issuer=_string(auth_raw, "issuer", where, DEFAULT_ISSUER),
        client_id=_string(auth_raw, "client_id", where, ""),
        oauth_localserver=_string(
            auth_raw, "oauth_localserver", where, DEFAULT_OAUTH_LOCALSERVER
        ),
        oauth_success_url=_string(auth_raw, "oauth_success_url", where, ""),
    )
    is_enabled = _bool(raw, "enable_logging", where) or _bool(
        logging_raw, "enabled", where
    )
    log_file = _string(logging_raw, "file_location", where, DEFAULT_LOG_FILE)
    return Config(
        path=path,
        raw=raw,
        auth=auth,
        nerd_api_endpoint=endpoint,
        is_logging_enabled=is_enabled,
        log_file=Path(log_file).expanduser(),
    )


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be an object, not {_kind(value)}")
    return value


def _string(raw: dict[str, Any], key: str, where: str, default: str) -> str:
    value = raw.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, not {_kind(value)}")
    return value


def _bool(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value)) or json.dumps(value)


# --- the session file -----------------------------------------------------------------


@dataclass
class Session:
    """The session file: the tokens of the last login and the chosen project.

    Password logins keep their tokens in ``jwt``; sessions written by older CLIs may
    hold them in ``oauth`` instead, and renewed tokens go back where they came from.
    """

    path: Path
    raw: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SESSION_SHAPE))

    @property
    def access_token(self) -> str:
        section = self._token_section()
        return self._get(section, "token" if section == "jwt" else "access_token")

    @property
    def refresh_token(self) -> str:
        return self._get(self._token_section(), "refresh_token")

    @property
    def project(self) -> str:
        return self._get("project", "name")

    @property
    def is_logged_in(self) -> bool:
        return bool(self.access_token or self.refresh_token)

    def set_tokens(self, access_token: str, refresh_token: str) -> None:
        """Store a token pair, in the section the current tokens came from."""
        section = self._token_section()
        self._set(
            section, "token" if section == "jwt" else "access_token", access_token
        )
        self._set(section, "refresh_token", refresh_token)

    def clear_tokens(self) -> None:
        """Forget every token; the chosen project stays."""
        for section in ("oauth", "jwt"):
            for key in SESSION_SHAPE[section]:
                self._set(section, key, "")

    def _token_section(self) -> str:
        has_jwt = self._get("jwt", "token") or self._get("jwt", "refresh_token")
        has_oauth = self._get("oauth", "access_token")
        return "oauth" if has_oauth and not has_jwt else "jwt"

    def set_project(self, name: str) -> None:
        self._set("project", "name", name)

    def _get(self, section: str, key: str) -> str:
        value = self.raw.get(section, {}).get(key, "")
        return value if isinstance(value, str) else ""

    def _set(self, section: str, key: str, value: str) -> None:
        self.raw.setdefault(section, {})[key] = value


def session_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The session file to use."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(SESSION_ENV_FILE):
        return Path(os.environ[SESSION_ENV_FILE]).expanduser()
    return nerd_home() / "session.json"


def load_session(explicit: str | os.PathLike[str] | None = None) -> Session:
    """Read the session file; a missing one is an empty (logged out) session."""
    path = session_path(explicit)
    raw = _read_json_file(path)
    _check_session_sections(raw, path)
    merged = copy.deepcopy(SESSION_SHAPE)
    for section, values in raw.items():
        if isinstance(values, dict) and section in merged:
            merged[section].update(values)
        else:
            merged[section] = values
    return Session(path=path, raw=merged)


def save_session(session: Session) -> None:
    """Write the session atomically, mode 0600."""
    write_json_atomic(session.path, session.raw, mode=0o600)
    log.debug("session.saved path=%s", session.path)


def _check_session_sections(raw: dict[str, Any], path: Path) -> None:
    for section in SESSION_SHAPE:
        value = raw.get(section)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"{path}: '{section}' must be an object, not {_kind(value)}",
                hint="run `nerd login` to write a fresh session",
            )


# --- reading and writing JSON files ---------------------------------------------------


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not text.strip():
        return {}
    return _parse_json(text, str(path))


def _parse_json(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}:{exc.lineno}:{exc.colno}: malformed JSON at line {exc.lineno}: "
            f"{exc.msg}",
            hint=f"fix line {exc.lineno} of {where}",
        ) from exc
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}:1: malformed config at line 1: expected a JSON object, "
            f"not {_kind(value)}"
        )
    return value


def write_json_atomic(path: Path, document: Any, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``document``; readers see the old file or the new one."""
    _make_private_folder(path.parent)
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` (0700) if it is missing; an existing one keeps its mode,
    except ~/.nerd itself, which holds sessions and logs and so is made private."""
    if folder.is_dir():
        if folder == nerd_home() and folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
        return
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {folder}: {exc}") from exc
    os.chmod(folder, 0o700)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _existing_mode(path: Path, *, default: int) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return default
