"""The ``nerd`` command: the group, its lazy commands, and the one error handler.

Every error ends here: ``nerd: error: <message>`` (and ``hint: …``) on stderr, and the
exit code of its class in :mod:`nerd.errors`; click's usage errors exit 2 and Ctrl-C
exits 130. Tracebacks are shown only with ``-v``.

Importing this module must stay cheap: the server (``nerd server``, ``nerd admin``) is
imported only when one of its commands runs, and the SDK only when a command needs it.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from nerd import __version__
from nerd.cli import dataset, login, project, queue, secret, task, worker, workload
from nerd.cli.context import (
    CONTEXT_SETTINGS,
    NerdGroup,
    State,
    add_global_options,
    configure_logging,
    get_state,
)
from nerd.cli.output import transcript
from nerd.errors import EXIT_INTERRUPTED, NerdError, UsageError

# name -> (module, attribute, short help); imported only when the command runs.
LAZY_COMMANDS = {
    "server": ("nerd.server.cli", "server", "Run the nerd server."),
    "admin": ("nerd.server.cli", "admin", "Manage users and projects on the server."),
}


class RootGroup(NerdGroup):
    """The top group: adds the lazily imported server commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            return _load_lazy(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][2]))
                continue
            command = self.commands[name]
            if not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 20)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _load_lazy(name: str) -> click.Command:
    module_name, attribute, _ = LAZY_COMMANDS[name]
    try:
        command = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise NerdError(
            f"the '{name}' command is not available: {exc}",
            hint="reinstall nerd with its server dependencies",
        ) from exc
    return add_global_options(command)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"nerd {__version__}")
        ctx.exit(0)


@click.group(cls=RootGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit.",
)
def cli() -> None:
    """nerd runs your batch scientific compute: upload a folder as a dataset, run
    tasks on workers, download what they wrote."""


@cli.command("version")
def version_command() -> None:
    """Print the version."""
    get_state().printer().value(
        "version", f"nerd {__version__}", {"version": __version__}
    )


for _module in (login, project, dataset, queue, task, worker):
    _module.register(cli)
for _module in (secret, workload):
    _module.register(cli)


# --- the one error handler ------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: run ``nerd`` and exit with its code."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None, state: State | None = None) -> int:
    """Run one command line and return its exit code; errors are printed here."""
    state = state or State()
    configure_logging(state.is_verbose)
    try:
        result = cli.main(
            list(argv) if argv is not None else None,
            prog_name="nerd",
            standalone_mode=False,
            obj=state,
        )
        return result if isinstance(result, int) else 0
    except BaseException as exc:  # this is the one place that reports errors
        return report(exc, state)
    finally:
        state.close()


def report(exc: BaseException, state: State) -> int:
    """Print ``exc`` the nerd way and return the exit code it stands for."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if _is_interrupt(exc):
        _print_error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return _quiet_broken_pipe()
    if state.is_verbose:
        traceback.print_exception(exc, file=sys.stderr)
    message, hint, code = _describe(exc)
    _print_error(message, hint)
    return code


def _describe(exc: BaseException) -> tuple[str, str | None, int]:
    if isinstance(exc, NerdError):
        return exc.message, exc.hint, exc.exit_code
    if isinstance(exc, click.UsageError):
        path = exc.ctx.command_path if exc.ctx else "nerd"
        return exc.format_message(), f"see `{path} --help`", exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.format_message(), None, exc.exit_code
    if isinstance(exc, click.Abort | EOFError):
        return "aborted: no input", None, 1
    if _is_validation_error(exc):
        return _first_validation_problem(exc), None, UsageError.exit_code
    hint = "run again with -v for the traceback"
    return f"unexpected {type(exc).__name__}: {exc}", hint, 1


def _is_validation_error(exc: BaseException) -> bool:
    # By name, so that starting the CLI does not import pydantic.
    cls = type(exc)
    return cls.__name__ == "ValidationError" and cls.__module__.startswith("pydantic")


def _first_validation_problem(exc: Any) -> str:
    """One line for the first problem pydantic found in what the command was given."""
    problem = exc.errors()[0]
    field = ".".join(str(part) for part in problem["loc"]) or "value"
    return f"invalid {field}: {problem['msg']}"


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    # click's prompts raise Abort "from None": the interrupt is still the context.
    causes = (exc.__cause__, exc.__context__)
    is_interrupted = any(isinstance(cause, KeyboardInterrupt) for cause in causes)
    return isinstance(exc, click.Abort) and is_interrupted


def _print_error(message: str, hint: str | None = None) -> None:
    lines = [f"nerd: error: {message}"] + ([f"hint: {hint}"] if hint else [])
    for line in lines:
        transcript.info("%s", line)
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _quiet_broken_pipe() -> int:
    """The reader of our stdout went away (``nerd … | head``): exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    main()
