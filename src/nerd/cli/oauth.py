"""``nerd login --browser``: OAuth2 authorization code with PKCE, RFC 8252 style.

The CLI listens on ``auth.oauth_localserver`` (loopback only), prints the server's
login URL and opens it in a browser. The browser comes back to
``/callback?code=…&state=…``; the CLI checks ``state``, trades the code and its PKCE
verifier for tokens, and sends the browser on to ``auth.oauth_success_url``.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import html
import logging
import secrets
import socket
import time
import webbrowser
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from nerd.errors import AuthError, NerdError, UsageError

if TYPE_CHECKING:
    from nerd.client.auth import AuthClient
    from nerd.models import TokenPair

log = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "nerd-cli"
CALLBACK_PATH = "/callback"
SUCCESS_PATH = "/api/v1/oauth/success"
# Host names the local server may use, and the address each binds to.
LOOPBACK_BINDS = {
    "localhost": ("127.0.0.1", socket.AF_INET),
    "127.0.0.1": ("127.0.0.1", socket.AF_INET),
    "::1": ("::1", socket.AF_INET6),
    "[::1]": ("::1", socket.AF_INET6),
}


@dataclass
class BrowserLogin:
    """One browser login: its PKCE pair, its state, and what the browser sent back."""

    auth: AuthClient
    client_id: str
    success_url: str
    state: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    redirect_uri: str = ""
    pair: TokenPair | None = None
    error: NerdError | None = None

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def url(self) -> str:
        return self.auth.authorize_url(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "code_challenge": self.challenge,
                "code_challenge_method": "S256",
                "state": self.state,
            }
        )

    def is_done(self) -> bool:
        return self.pair is not None or self.error is not None

    def answer(self, query: dict[str, list[str]]) -> None:
        """Take the browser's callback: check the state, trade the code in."""
        state = query.get("state", [""])[0]
        if not secrets.compare_digest(state.encode(), self.state.encode()):
            self.error = AuthError(
                "the browser login came back with a wrong state; it was not "
                "started by this command",
                hint="run `nerd login --browser` again",
            )
            return
        if "error" in query:
            self.error = AuthError(f"the server refused the login: {query['error'][0]}")
            return
        try:
            self.pair = self.auth.exchange_code(
                query.get("code", [""])[0],
                code_verifier=self.verifier,
                redirect_uri=self.redirect_uri,
                client_id=self.client_id,
            )
        except NerdError as exc:
            self.error = exc


def log_in_with_browser(
    auth: AuthClient,
    *,
    localserver: str,
    client_id: str,
    success_url: str,
    timeout_s: float,
    say: Any,
) -> TokenPair:
    """Run a browser login to its end; the token pair, or a clear NerdError."""
    login = BrowserLogin(
        auth,
        client_id or DEFAULT_CLIENT_ID,
        success_url or auth.api.endpoint + SUCCESS_PATH,
    )
    server = _listen(localserver, login)
    try:
        host, port = str(server.server_address[0]), server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        login.redirect_uri = f"http://{shown}:{port}{CALLBACK_PATH}"
        url = login.url()
        say(f"Open this URL in a browser to log in:\n\n    {url}\n")
        _open_browser(url)
        _serve_until_done(server, login, timeout_s)
    finally:
        server.server_close()
    if login.error is not None:
        raise login.error
    assert login.pair is not None
    return login.pair


def _listen(localserver: str, login: BrowserLogin) -> HTTPServer:
    """The callback server on loopback; a clear error if the port is taken."""
    host, port = _parse_localserver(localserver)
    address, family = LOOPBACK_BINDS[host]
    server_class = _CallbackServer6 if family == socket.AF_INET6 else HTTPServer
    try:
        server = server_class((address, port), _handler_for(login))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"cannot listen on {localserver} for the browser login: "
                "the port is taken",
                hint="stop what uses it, or set auth.oauth_localserver to another port",
            ) from None
        raise UsageError(
            f"cannot listen on {localserver} for the browser login: {exc.strerror}"
        ) from None
    return server


class _CallbackServer6(HTTPServer):
    address_family = socket.AF_INET6


def _parse_localserver(localserver: str) -> tuple[str, int]:
    host, _, port_text = localserver.rpartition(":")
    if host.lower() not in LOOPBACK_BINDS:
        raise UsageError(
            f"auth.oauth_localserver '{localserver}' is not on this machine",
            hint="use localhost:PORT or 127.0.0.1:PORT",
        )
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(
            f"auth.oauth_localserver '{localserver}' has no valid port",
            hint="use localhost:PORT, e.g. localhost:9876",
        )
    return host.lower(), int(port_text)


def _open_browser(url: str) -> None:
    try:
        is_opened = webbrowser.open(url)
    except webbrowser.Error:
        is_opened = False
    log.debug("oauth.browser_opened is_opened=%s", is_opened)


def _serve_until_done(
    server: HTTPServer, login: BrowserLogin, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not login.is_done():
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise AuthError(
                f"the browser login timed out after {timeout_s:g} s",
                hint="run `nerd login --browser` again and finish in the browser, "
                "or log in with a password",
            )
        server.timeout = min(left_s, 1.0)
        server.handle_request()


def _handler_for(login: BrowserLogin) -> type[BaseHTTPRequestHandler]:
    class CallbackHandler(BaseHTTPRequestHandler):
        """Answers the browser's return; anything but the callback is a 404."""

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != CALLBACK_PATH or login.is_done():
                self._page(404, "Not found", "This is not a page of the nerd login.")
                return
            login.answer(parse_qs(parts.query))
            if login.error is not None:
                self._page(400, "The login failed", login.error.message)
                return
            self.send_response(303)
            self.send_header("Location", login.success_url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _page(self, status: int, title: str, message: str) -> None:
            body = (
                f"<!doctype html><title>{html.escape(title)}</title>"
                f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # The request line holds the one-time code: never log it.
            log.debug("oauth.callback status=%s", args[1] if len(args) > 1 else "")

    return CallbackHandler
