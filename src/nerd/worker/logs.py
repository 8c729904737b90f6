"""Reading what a running command printed: new bytes for log appends, and tails."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from nerd.models import LogStream

STDERR_TAIL_BYTES = 2048
MAX_APPEND_BYTES = 256 * 1024


class LogTail:
    """Follows one log file, handing out the text written since the last read.

    Decoding is incremental, so a UTF-8 character split across two reads is not
    mangled; undecodable bytes become U+FFFD.
    """

    def __init__(self, path: Path, stream: LogStream) -> None:
        self.path = path
        self.stream = stream
        self._offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read_new(self, *, final: bool = False) -> str:
        """Text written since the last call, at most about MAX_APPEND_BYTES of it."""
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read(MAX_APPEND_BYTES)
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        return self._decoder.decode(data, final=final and not self.has_more())

    def drain(self) -> list[str]:
        """Everything still unread, in append-sized pieces, after the command ended."""
        pieces = [self.read_new(final=True)]
        while self.has_more():
            pieces.append(self.read_new(final=True))
        return [piece for piece in pieces if piece]

    def has_more(self) -> bool:
        """Whether bytes remain unread (a burst larger than one append)."""
        try:
            return self.path.stat().st_size > self._offset
        except FileNotFoundError:
            return False


def tail_text(path: Path, size_bytes: int = STDERR_TAIL_BYTES) -> str:
    """The last ``size_bytes`` of a file as text ("" if it does not exist)."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - size_bytes))
            data = file.read()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def last_line(path: Path, max_chars: int = 1024) -> str:
    """The last non-empty line of a file, trimmed to ``max_chars``."""
    lines = [line for line in tail_text(path, 4 * max_chars).splitlines() if line]
    return lines[-1].strip()[:max_chars] if lines else ""
