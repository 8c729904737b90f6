"""Every error nerd raises on purpose, shared by the CLI, the SDK and the server.

The tree, with each class's exit code and HTTP status::

    NerdError                    1  500
    ├── UsageError               2  400  bad arguments, ids or input
    │   ├── ConfigError          2  400  a malformed config or session file
    │   └── UnsafePathError      2  400  a path that would escape its folder
    ├── NotFoundError            3  404  no such resource (or not yours)
    ├── AuthError                4  401  not logged in, bad token, bad password
    │   ├── SessionExpiredError  4  401  the session can no longer be renewed
    │   └── KeyMismatchError     4  401  the server's key is not the configured one
    ├── PermissionDeniedError    5  403  logged in, but not allowed
    ├── ServerUnreachableError   6  503  no HTTP answer from the server
    ├── TaskFailedError          7  500  a task the command waited for failed
    ├── ConflictError            8  409  the resource is not in a state for this
    │   ├── ChunksMissingError   8  409  a manifest names chunks not stored
    │   └── RunExpiredError      8  409  a stale run token: the run was taken back
    ├── IntegrityError           9  422  bytes that do not match their hash
    └── StorageFullError        10  507  the server has no room left

The server turns an error into one JSON body ``{"error": {"code", "message", "hint"}}``;
the SDK turns that body back into the same class with :func:`from_body`; the CLI prints
``nerd: error: <message>`` and exits with :attr:`NerdError.exit_code`.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_INTERRUPTED = 130


class NerdError(Exception):
    """Something went wrong that nerd knows how to explain."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_body(self) -> dict[str, Any]:
        """The JSON error body the server sends for this error."""
        error = {"code": self.code, "message": self.message, "hint": self.hint}
        return {"error": error}


class UsageError(NerdError):
    """The command or request was given arguments it cannot use."""

    exit_code = 2
    http_status = 400
    code = "usage"


class ConfigError(UsageError):
    """A config or session file cannot be read."""

    code = "config"


class UnsafePathError(UsageError):
    """A path in a dataset would land outside its folder or through a link."""

    code = "unsafe_path"


class NotFoundError(NerdError):
    """The resource does not exist, or belongs to a project the caller cannot see."""

    exit_code = 3
    http_status = 404
    code = "not_found"


class AuthError(NerdError):
    """The caller is not logged in, or its credentials were refused."""

    exit_code = 4
    http_status = 401
    code = "unauthenticated"


class SessionExpiredError(AuthError):
    """The session's tokens expired and cannot be renewed."""

    code = "session_expired"


class KeyMismatchError(AuthError):
    """The server signs with a key other than the one in the config."""

    code = "key_mismatch"


class PermissionDeniedError(NerdError):
    """The caller is known but may not do this."""

    exit_code = 5
    http_status = 403
    code = "permission_denied"


class ServerUnreachableError(NerdError):
    """The server did not answer."""

    exit_code = 6
    http_status = 503
    code = "server_unreachable"


class TaskFailedError(NerdError):
    """A task that the command was following ended in failure."""

    exit_code = 7
    http_status = 500
    code = "task_failed"


class ConflictError(NerdError):
    """The resource is not in a state that allows this request."""

    exit_code = 8
    http_status = 409
    code = "conflict"


class ChunksMissingError(ConflictError):
    """A manifest names chunks the project does not hold; send them, then commit."""

    code = "chunks_missing"


class RunExpiredError(ConflictError):
    """The run token is stale: the run was stopped or its lease lapsed."""

    code = "run_expired"


class IntegrityError(NerdError):
    """Stored or received bytes do not match the hash that names them."""

    exit_code = 9
    http_status = 422
    code = "integrity"


class StorageFullError(NerdError):
    """The object store has no space left."""

    exit_code = 10
    http_status = 507
    code = "storage_full"


def _all_subclasses(cls: type[NerdError]) -> list[type[NerdError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[NerdError]] = {
    cls.code: cls for cls in _all_subclasses(NerdError)
}


def from_body(status: int, body: Any) -> NerdError:
    """Rebuild the error the server sent, falling back on the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        cls = ERRORS_BY_CODE.get(str(error.get("code")), _class_for_status(status))
        return cls(error["message"], hint=error.get("hint"))
    return _class_for_status(status)(f"the server answered HTTP {status}")


def _class_for_status(status: int) -> type[NerdError]:
    for cls in (
        UsageError,
        NotFoundError,
        AuthError,
        PermissionDeniedError,
        ConflictError,
        IntegrityError,
        StorageFullError,
    ):
        if cls.http_status == status:
            return cls
    return NerdError
