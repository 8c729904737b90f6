"""A registry of no images on 127.0.0.1, over plain HTTP, for the pull tests.

It speaks just enough of the registry API (``/v2/``, manifests) for podman to ask:
every manifest is ``MANIFEST_UNKNOWN``, and with ``credentials`` set every request
without those Basic credentials is ``UNAUTHORIZED``. It keeps the Authorization
header of each request, so a test can see what the worker sent.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeRegistry:
    """The server, what it has seen, and a registries.conf that lets podman in."""

    def __init__(self, folder: Path) -> None:
        self.credentials: str | None = None  # "user:password" once set
        self.authorizations: list[str | None] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.registries_conf = folder / "registries.conf"
        self.registries_conf.write_text(
            f'[[registry]]\nlocation = "{self.address}"\ninsecure = true\n'
        )
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def is_authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(self.credentials.encode()).decode()
        return header == f"Basic {expected}"


def _basic_credentials(header: str | None) -> str:
    scheme, _, token = (header or "").partition(" ")
    if scheme != "Basic":
        return ""
    return base64.b64decode(token).decode(errors="replace")


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            header = self.headers.get("Authorization")
            registry.authorizations.append(header)
            if not registry.is_authorized(header):
                # A careless registry echoes what it was sent; the worker must mask it.
                sent = _basic_credentials(header)
                self._errors(401, "UNAUTHORIZED", f"bad credentials {sent}")
            elif self.path.rstrip("/") == "/v2":
                self._send(200, {})
            else:
                self._errors(404, "MANIFEST_UNKNOWN", "manifest unknown")

        do_HEAD = do_GET

        def _errors(self, status: int, code: str, message: str) -> None:
            errors = {"errors": [{"code": code, "message": message}]}
            self._send(status, errors)

        def _send(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="fake"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    return Handler
