"""The one HTTP connection every part of the SDK talks through.

It is urllib3's: the bulk transfers use it already, and httpx, which the SDK used
before, costs every command another 70 ms or so to import.
"""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3
from pydantic import BaseModel, TypeAdapter

from nerd import errors

log = logging.getLogger(__name__)

M = TypeVar("M")

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0

# Returns the bearer token to send, renewing it first if it is about to expire;
# None means anonymous.
TokenSource = Callable[[], str | None]


@dataclass(frozen=True)
class Response:
    """A whole answer: its status, headers and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Api:
    """JSON over HTTP to one nerd server, with nerd's errors instead of HTTP ones."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: TokenSource | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token or (lambda: None)
        self._timeout_s = timeout_s
        # No retries and no redirects: a request is sent once, and what the server
        # answered is what the caller sees.
        self._pool = urllib3.PoolManager(maxsize=32, retries=False)

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for the current token, renewed if need be."""
        token = self._token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | Iterator[bytes] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        anonymous: bool = False,
    ) -> Response:
        """Send one request; raise the NerdError the server described on failure."""
        all_headers = dict(headers or {})
        if not anonymous:
            all_headers.update(self.auth_headers())
        body: bytes | Iterator[bytes] | None = content
        if json is not None:
            if isinstance(json, BaseModel):
                json = json.model_dump(mode="json")
            body = jsonlib.dumps(json).encode()
            all_headers.setdefault("Content-Type", "application/json")
        url = f"{self.endpoint}{API_PREFIX}{path}"
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        read_s = self._timeout_s if timeout_s is None else timeout_s
        try:
            answer = self._pool.request(
                method,
                url,
                body=body,
                headers=all_headers,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=read_s),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise errors.ServerUnreachableError(
                f"cannot reach the nerd server at {self.endpoint}: {_reason(exc)}",
                hint="start one with `nerd server`, or set nerd_api_endpoint",
            ) from exc
        response = Response(answer.status, answer.headers, answer.data)
        log.debug("%s %s -> %s", method, path, response.status_code)
        if response.status_code >= 400:
            raise errors.from_body(response.status_code, _json_or_none(response))
        return response

    def call(self, method: str, path: str, model: type[M] | Any, **kwargs: Any) -> M:
        """Send a request; parse the JSON answer as ``model``, e.g. ``list[Task]``."""
        response = self.request(method, path, **kwargs)
        parsed: M = _adapter(model).validate_json(response.content)
        return parsed


def _json_or_none(response: Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    # A refused connection reads "<HTTPConnection ...>: Failed to establish a new
    # connection: [Errno 111] Connection refused"; the part after the object will do.
    text = str(exc) or type(exc).__name__
    return text.split(">: ", 1)[-1]


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    """One adapter per answer type: building one costs more than most answers."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        # Two threads may both build one; either is fine to keep.
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter
