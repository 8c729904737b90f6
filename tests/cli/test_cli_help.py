"""Help on every command, the version, and a help that imports no server stack."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from cli_helpers import Nerd

from nerd import __version__
from nerd.cli.main import cli

GLOBAL_FLAGS = ("--config-file", "--session-file", "--verbose", "--output")


def command_paths(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


@pytest.mark.parametrize("path", command_paths(cli), ids=" ".join)
def test_every_command_has_help_with_the_global_options(
    nerd: Nerd, path: tuple[str, ...]
) -> None:
    result = nerd(*path, "--help")

    assert result.exit_code == 0
    assert all(flag in result.stdout for flag in GLOBAL_FLAGS)


def test_worker_verbs_are_hidden_from_task_help(nerd: Nerd) -> None:
    result = nerd("task", "--help")

    assert "receive" not in result.stdout
    assert "heartbeat" not in result.stdout
    assert "start" in result.stdout


def test_version_and_dash_dash_version_print_the_version(nerd: Nerd) -> None:
    command = nerd("version")
    flag = nerd("--version")

    assert command.stdout == flag.stdout == f"nerd {__version__}\n"
    assert command.exit_code == flag.exit_code == 0


def test_help_imports_neither_the_server_nor_http_stacks() -> None:
    script = (
        "import sys\n"
        "from nerd.cli.main import run\n"
        "run(['--help'])\n"
        "heavy = {'fastapi', 'sqlalchemy', 'httpx', 'uvicorn', 'nerd.server'}\n"
        "print(sorted(m for m in sys.modules if m in heavy))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert done.stdout.splitlines()[-1] == "[]"


def test_the_console_script_runs_as_a_process(nerd_process: Nerd) -> None:
    result = nerd_process("--version")

    assert (result.exit_code, result.stdout) == (0, f"nerd {__version__}\n")
