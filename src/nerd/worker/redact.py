"""Keeping secret values out of what the worker sends: logs, results and messages.

A task given secrets as env may print them by mistake; the worker knows the values,
so it replaces each with ``***`` before a log append, a result or a failure message
leaves the host. A value split across two log appends is not caught; values shorter
than :data:`MIN_SECRET_CHARS` are left alone, or every ``1`` would be masked.
"""

from __future__ import annotations

from pathlib import Path

from nerd.models import LogStream
from nerd.worker.logs import LogTail

MASK = "***"
MIN_SECRET_CHARS = 4


class Redactor:
    """Masks a fixed set of secret values in text."""

    def __init__(self, values: list[str]) -> None:
        found = {value for value in values if len(value) >= MIN_SECRET_CHARS}
        # Longest first, so a value that contains another is masked whole.
        self.values = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        return text


class RedactingLogTail(LogTail):
    """A :class:`LogTail` whose text has the secret values masked."""

    def __init__(self, path: Path, stream: LogStream, redactor: Redactor) -> None:
        super().__init__(path, stream)
        self.redactor = redactor

    def read_new(self, *, final: bool = False) -> str:
        return self.redactor(super().read_new(final=final))
