"""How commands print: data on stdout in one of three formats, messages on stderr.

- ``pretty``: rich tables (the default).
- ``raw``: tab-separated values, no headers; a record is one ``field<TAB>value`` line
  per field.
- ``json``: exactly one JSON document per command.

Progress bars go to stderr, and only when stderr is a terminal and the output is not
JSON. rich is imported only when something is drawn, so ``nerd --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from nerd.errors import UsageError

FORMATS = ("pretty", "raw", "json")
NON_TTY_WIDTH = 200

# Everything printed also goes here, so `enable_logging` can keep a copy in a file.
transcript = logging.getLogger("nerd.output")
transcript.propagate = False

# (key in the row, column title)
Columns = Sequence[tuple[str, str]]
# Called with (bytes done, bytes in all), as the SDK's transfers report it.
Progress = Callable[[int, int], None]


def check_format(value: str) -> str:
    """The output format, or a usage error naming the allowed ones."""
    if value not in FORMATS:
        raise UsageError(
            f"unknown output format '{value}': use one of {', '.join(FORMATS)}"
        )
    return value


def jsonable(value: Any) -> Any:
    """Pydantic models and datetimes as plain JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def cell(value: Any, *, empty: str = "") -> str:
    """One value as table text: argv shell-quoted, maps as k=v, times to the second."""
    if value is None:
        return empty
    if isinstance(value, list):
        return _visible(shlex.join(str(item) for item in value))
    if isinstance(value, dict):
        return _visible(",".join(f"{key}={item}" for key, item in value.items()))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(getattr(value, "value", value))
    return _visible(_short_time(text))


# C0 and C1 control characters and DEL: printed as they are, a name holding them
# could move the cursor, clear the screen or forge lines of a table.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """``text`` with each control character written as an escape, e.g. ``\\x1b``."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _short_time(text: str) -> str:
    if len(text) >= 19 and text[10:11] == "T" and text[4:5] == "-":
        try:
            return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return text
    return text


class Printer:
    """Prints data in the chosen format and messages on stderr."""

    def __init__(self, output_format: str) -> None:
        self.format = check_format(output_format)

    @property
    def is_json(self) -> bool:
        return self.format == "json"

    def table(self, columns: Columns, rows: Sequence[Any], doc: Any = None) -> None:
        """A list of things: one row each."""
        if self.is_json:
            return self.document(rows if doc is None else doc)
        dicts = [_as_row(row) for row in rows]
        if self.format == "raw":
            for row in dicts:
                self._out("\t".join(cell(row.get(key)) for key, _ in columns))
            return None
        return self._rich_table(columns, dicts)

    def record(self, fields: Columns, row: Any, doc: Any = None) -> None:
        """One thing: a field per line."""
        if self.is_json:
            return self.document(row if doc is None else doc)
        values = _as_row(row)
        if self.format == "raw":
            for key, _ in fields:
                self._out(f"{key}\t{cell(values.get(key))}")
            return None
        pairs = [{"field": title, "value": values.get(key)} for key, title in fields]
        return self._rich_table([("field", ""), ("value", "")], pairs, header=False)

    def value(self, key: str, value: str, doc: Any = None) -> None:
        """A single value (a new id, a version): bare text, or ``{key: value}``."""
        if self.is_json:
            return self.document({key: value} if doc is None else doc)
        return self._out(value)

    def outcome(self, doc: Any) -> None:
        """What a command that only changes state did: its JSON document, if json."""
        if self.is_json:
            self.document(doc)

    def document(self, doc: Any) -> None:
        """The command's one JSON document."""
        self._out(json.dumps(jsonable(doc), indent=2, sort_keys=False))

    def message(self, text: str) -> None:
        """A message for the person at the terminal (stderr, in every format)."""
        transcript.info("%s", text)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    @contextmanager
    def progress(self, description: str) -> Iterator[Progress]:
        """A byte progress bar on stderr; a no-op off a terminal or with JSON."""
        if self.is_json or not sys.stderr.isatty():
            yield lambda done_bytes, total_bytes: None
            return
        from rich.console import Console
        from rich.progress import Progress as Bar

        with Bar(*_progress_columns(), console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)

    def _out(self, text: str) -> None:
        transcript.info("%s", text)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def _rich_table(
        self, columns: Columns, rows: list[dict[str, Any]], *, header: bool = True
    ) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=header, box=None if not header else _box())
        for _, title in columns:
            table.add_column(title, overflow="fold")
        for row in rows:
            table.add_row(*(cell(row.get(key), empty="-") for key, _ in columns))
        width = None if sys.stdout.isatty() else NON_TTY_WIDTH
        console = Console(file=sys.stdout, width=width, highlight=False, record=True)
        console.print(table)
        transcript.info("%s", console.export_text().rstrip("\n"))


def _as_row(row: Any) -> dict[str, Any]:
    if hasattr(row, "model_dump"):
        return dict(row.model_dump())
    if isinstance(row, Mapping):
        return dict(row)
    raise TypeError(f"cannot print {type(row).__name__} as a row")


def _box() -> Any:
    from rich import box

    return box.SIMPLE_HEAD


def _progress_columns() -> list[Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TaskProgressColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    return [
        TextColumn("{task.description}"),
        DownloadColumn(binary_units=True),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
    ]
