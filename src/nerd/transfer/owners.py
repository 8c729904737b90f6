"""Which process on which host left something behind, and whether it is still there.

A download's temp files and an upload's record carry the host and pid of the process
that wrote them, so that a later process can tell one left by a process killed on
this host (safe to clean up or take over) from one still in use.
"""

from __future__ import annotations

import hashlib
import os
import socket

# The host as a short hash of its name: it goes into file names.
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def this_process() -> str:
    """``<host tag>/<pid>`` of this process."""
    return f"{HOST_TAG}/{os.getpid()}"


def is_gone(host_tag: str, pid: int) -> bool:
    """Whether the process is known to have ended: on this host, and not running.

    Another host's process may well be alive, so it never counts as gone; neither
    does another user's (which ``kill`` may not signal).
    """
    if host_tag != HOST_TAG:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
