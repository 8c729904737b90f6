"""What every command shares: the global options, and the state they fill in.

The global options are accepted by every command and group, so ``nerd task list
--output json`` and ``nerd --output json task list`` mean the same; a value given
closer to the command wins. :class:`NerdGroup` adds them to each command it holds.
Environment variables are read here, not by click, so that a flag always beats them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nerd import config as nerd_config
from nerd.cli.output import Printer, check_format, transcript
from nerd.errors import NerdError

if TYPE_CHECKING:
    from nerd.client import Client

ENV_DEBUG = "NERD_DEBUG"
ENV_OUTPUT = "NERD_OUTPUT"
GLOBAL_MARK = "is_nerd_global"
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@dataclass
class State:
    """The global options of one invocation, and what is built from them lazily."""

    config_file: str | None = None
    session_file: str | None = None
    verbose_flag: bool = False
    output: str | None = None
    _config: nerd_config.Config | None = None
    _client: Client | None = None
    _log_file: logging.Handler | None = None

    @property
    def is_verbose(self) -> bool:
        env = os.environ.get(ENV_DEBUG, "").strip().lower()
        return self.verbose_flag or env not in ("", "0", "false", "no", "off")

    @property
    def output_format(self) -> str:
        return check_format(self.output or os.environ.get(ENV_OUTPUT) or "pretty")

    def printer(self) -> Printer:
        self._start_log_file_if_configured()
        return Printer(self.output_format)

    def _start_log_file_if_configured(self) -> None:
        # A malformed config is reported by the commands that need the config.
        with contextlib.suppress(NerdError):
            self.config()

    def config(self) -> nerd_config.Config:
        """The config, read once; starts the log file if the config asks for one."""
        if self._config is None:
            self._config = nerd_config.load_config(self.config_file)
            if self._config.is_logging_enabled:
                self._log_file = _start_log_file(self._config)
        return self._config

    def load_session(self) -> nerd_config.Session:
        return nerd_config.load_session(self.session_file)

    def client(self, project: str | None = None) -> Client:
        """The SDK client for this invocation (config, session, environment)."""
        if self._client is None:
            from nerd.client import Client

            self.config()
            self._client = Client.from_environment(
                self.config_file, self.session_file, project
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._log_file is not None:
            _stop_log_file(self._log_file)


def get_state(ctx: click.Context | None = None) -> State:
    """The state of this invocation, kept on the root context."""
    root = (ctx or click.get_current_context()).find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def configure_logging(is_verbose: bool, *, quiet_level: int = logging.WARNING) -> None:
    """One stderr handler on the ``nerd`` logger: debug lines with -v, else warnings."""
    logger = logging.getLogger("nerd")
    logger.setLevel(logging.DEBUG if is_verbose else logging.INFO)
    handler = next((h for h in logger.handlers if getattr(h, GLOBAL_MARK, False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        setattr(handler, GLOBAL_MARK, True)
        logger.addHandler(handler)
    handler.setLevel(logging.DEBUG if is_verbose else quiet_level)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _start_log_file(cfg: nerd_config.Config) -> logging.Handler:
    """Append every message and every line of output to the configured log file."""
    cfg.log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_private_file(cfg.log_file)
    handler = logging.FileHandler(cfg.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    for logger in (logging.getLogger("nerd"), transcript):
        logger.addHandler(handler)
    transcript.setLevel(logging.INFO)
    return handler


def _make_private_file(path: Path) -> None:
    """Create ``path`` as 0600, or make an older, wider one 0600, whatever the umask.

    Output can hold secret values a user asked to see: the log is the owner's alone.
    """
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _stop_log_file(handler: logging.Handler) -> None:
    for logger in (logging.getLogger("nerd"), transcript):
        logger.removeHandler(handler)
    handler.close()


# --- the global options ---------------------------------------------------------------


def _store(attr: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            setattr(get_state(ctx), attr, value)
        return value

    return callback


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        get_state(ctx).verbose_flag = True
        configure_logging(True)
    return value


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        get_state(ctx).output = "json"
    return value


def global_options() -> list[click.Option]:
    """Fresh instances of the options every command accepts."""
    options = [
        click.Option(
            ["--config-file", "--config", "config_file"],
            metavar="PATH",
            help="Config file [env NERD_CONFIG_FILE; default ~/.nerd/config.json].",
            callback=_store("config_file"),
        ),
        click.Option(
            ["--session-file", "session_file"],
            metavar="PATH",
            help="Session file [env NERD_SESSION_FILE; default ~/.nerd/session.json].",
            callback=_store("session_file"),
        ),
        click.Option(
            ["-v", "--verbose", "--debug", "verbose"],
            is_flag=True,
            help="Debug output on stderr, tracebacks on errors [env NERD_DEBUG].",
            callback=_set_verbose,
        ),
        click.Option(
            ["--output", "output"],
            type=click.Choice(["pretty", "raw", "json"]),
            help="Output format [env NERD_OUTPUT; default pretty].",
            callback=_store("output"),
        ),
        click.Option(
            ["--json-format", "json_format"],
            is_flag=True,
            help="Same as --output json.",
            callback=_set_json,
        ),
    ]
    for option in options:
        option.expose_value = False
        setattr(option, GLOBAL_MARK, True)
    return options


def add_global_options(command: click.Command) -> click.Command:
    """Give ``command`` the global options, once."""
    if not any(getattr(p, GLOBAL_MARK, False) for p in command.params):
        command.params.extend(global_options())
    return command


class NerdGroup(click.Group):
    """A group whose commands (and sub-groups) all take the global options."""

    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", dict(CONTEXT_SETTINGS))
        super().__init__(*args, **kwargs)
        add_global_options(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_global_options(cmd)
        super().add_command(cmd, name)
