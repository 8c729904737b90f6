"""Write docs/cli.md from the CLI itself, so the reference cannot drift from --help.

Run ``python tools/cli_reference.py`` after changing a command; a test fails while
docs/cli.md differs from what this prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from nerd import errors
from nerd.cli.main import cli

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

INTRO = """\
# nerd command reference

Generated from `--help` by `tools/cli_reference.py`; do not edit by hand.
The compatibility surface these commands keep is `../shared/spec/nerd-cli.md`.

Every command takes the global options (`--config-file`, `--session-file`, `-v`,
`--output`, `--json-format`), before or after the command's name. Data goes to stdout;
messages, progress and errors to stderr. An error is one line `nerd: error: …`, maybe a
`hint:` line, and an exit code for its kind:

| exit | kind |
|---|---|
"""


def exit_code_rows() -> Iterator[str]:
    """One table row per exit code, naming the error classes that use it."""
    by_code: dict[int, list[str]] = {}
    for cls in errors.ERRORS_BY_CODE.values():
        by_code.setdefault(cls.exit_code, []).append(
            f"{cls.__name__}: {cls.__doc__ or ''}".strip()
        )
    for code in sorted(by_code):
        yield f"| {code} | {'<br>'.join(sorted(by_code[code]))} |"
    yield f"| {errors.EXIT_INTERRUPTED} | interrupted (Ctrl-C) |"


def command_sections(
    command: click.Command, path: list[str], parent: click.Context | None = None
) -> Iterator[tuple[str, str]]:
    """(``nerd a b``, help text) for the command and each visible sub-command."""
    name = " ".join(path)
    settings = {**command.context_settings, "terminal_width": 88}
    with click.Context(command, info_name=path[-1], parent=parent, **settings) as ctx:
        yield name, command.get_help(ctx)
        if not isinstance(command, click.Group):
            return
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from command_sections(sub, [*path, sub_name], ctx)


def render() -> str:
    parts = [INTRO, *(row + "\n" for row in exit_code_rows())]
    for title, text in command_sections(cli, ["nerd"]):
        parts.append(f"\n## `{title}`\n\n```\n{text.rstrip()}\n```\n")
    return "".join(parts)


def main() -> int:
    DOC_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
