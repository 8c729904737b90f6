"""The one HTTP connection every part of the SDK talks through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from nerd import errors

log = logging.getLogger(__name__)

M = TypeVar("M")

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 60.0

# Returns the bearer token to send, renewing it first if it is about to expire;
# None means anonymous.
TokenSource = Callable[[], str | None]


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
        self._http = httpx.Client(
            base_url=self.endpoint + API_PREFIX,
            # Plain HTTP needs no certificates: loading them costs ~0.1 s per command.
            verify=not self.endpoint.startswith("http://"),
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    def close(self) -> None:
        self._http.close()

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
    ) -> httpx.Response:
        """Send one request; raise the NerdError the server described on failure."""
        all_headers = dict(headers or {})
        if not anonymous:
            all_headers.update(self.auth_headers())
        if isinstance(json, BaseModel):
            json = json.model_dump(mode="json")
        extra: dict[str, Any] = {}
        if timeout_s is not None:
            extra["timeout"] = httpx.Timeout(timeout_s, connect=10.0)
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                content=content,
                params=params,
                headers=all_headers,
                **extra,
            )
        except httpx.TransportError as exc:
            raise errors.ServerUnreachableError(
                f"cannot reach the nerd server at {self.endpoint}: {_reason(exc)}",
                hint="start one with `nerd server`, or set nerd_api_endpoint",
            ) from exc
        log.debug("%s %s -> %s", method, path, response.status_code)
        if response.status_code >= 400:
            raise errors.from_body(response.status_code, _json_or_none(response))
        return response

    def call(self, method: str, path: str, model: type[M] | Any, **kwargs: Any) -> M:
        """Send a request; parse the JSON answer as ``model``, e.g. ``list[Task]``."""
        response = self.request(method, path, **kwargs)
        parsed: M = _adapter(model).validate_json(response.content)
        return parsed

    @contextmanager
    def stream(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed response, for bodies too large to hold in memory."""
        all_headers = {**(headers or {}), **self.auth_headers()}
        try:
            with self._http.stream(method, path, headers=all_headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise errors.from_body(
                        response.status_code, _json_or_none(response)
                    )
                yield response
        except httpx.TransportError as exc:
            raise errors.ServerUnreachableError(
                f"cannot reach the nerd server at {self.endpoint}: {_reason(exc)}"
            ) from exc


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _reason(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    """One adapter per answer type: building one costs more than most answers."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        # Two threads may both build one; either is fine to keep.
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter
