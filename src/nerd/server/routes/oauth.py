"""Browser logins: OAuth2 authorization code with PKCE, ``/oauth/…``.

The CLI (a public client) opens ``GET /oauth/authorize`` in the browser with a PKCE
challenge, a ``state`` and a redirect URI on its own loopback server. The page is a
plain login form; a good password answers with a redirect to that URI carrying a
one-time code, which the CLI trades at ``POST /oauth/token`` together with the PKCE
verifier. Only loopback redirect URIs are accepted (RFC 8252), so a code can never be
sent to another host, and a code is useless without the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
import secrets
from datetime import timedelta
from importlib import resources
from string import Template
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from nerd.errors import AuthError, UsageError
from nerd.models import TokenPair
from nerd.server import db
from nerd.server.deps import AppSettings, DbSession, Key
from nerd.server.passwords import check_login
from nerd.server.routes.auth import token_pair
from nerd.server.tokens import AccessClaims, hash_secret, issue_refresh_token

log = logging.getLogger(__name__)

router = APIRouter(prefix="/oauth", tags=["oauth"])

CODE_TTL_S = 120
MAX_FORM_BYTES = 16 * 1024
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# RFC 7636: the verifier is 43-128 characters of this set; S256 challenges are 43.
PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
)
# The pages load nothing and may not be framed (no clickjacking of the form).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form body (the last value of a repeated field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise UsageError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise UsageError("the form is not urlencoded UTF-8") from None


Form = Annotated[dict[str, str], Depends(read_form)]


@router.get("/authorize", response_class=HTMLResponse)
def show_login_page(request: Request) -> Response:
    """The login form for a browser login the CLI started."""
    fields = dict(request.query_params)
    try:
        params = _authorize_params(fields)
    except UsageError as exc:
        return _message_page("This login link is not valid", exc.message, 400)
    return _login_page(params, username="", error="", status=200)


@router.post("/authorize", response_class=HTMLResponse)
def submit_login_page(form: Form, session: DbSession) -> Response:
    """Check the password; on success send the browser back to the CLI with a code."""
    try:
        params = _authorize_params(form)
    except UsageError as exc:
        return _message_page("This login link is not valid", exc.message, 400)
    username = form.get("username", "").strip()
    try:
        user = check_login(session, username, form.get("password", ""))
    except AuthError as exc:
        return _login_page(params, username=username, error=exc.message, status=401)
    code = _issue_code(session, user, params)
    log.info("oauth.code_issued user=%s client=%s", user.username, params["client_id"])
    query = urlencode({"code": code, "state": params["state"]})
    return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=303)


@router.post("/token")
def create_token_from_code(
    form: Form, session: DbSession, key: Key, settings: AppSettings
) -> TokenPair:
    """Trade a one-time code and its PKCE verifier for a token pair."""
    if form.get("grant_type") != "authorization_code":
        raise UsageError("grant_type must be 'authorization_code'")
    row = _redeem_code(session, form)
    user = session.get(db.User, row.user_id)
    if user is None or user.is_disabled:
        raise AuthError("the user of this login can no longer log in")
    refresh = issue_refresh_token(
        session, user, project=None, ttl_s=settings.refresh_ttl_s
    )
    session.commit()
    log.info("user.logged_in user=%s via=browser", user.username)
    return token_pair(AccessClaims(user.username, "user"), refresh, key, settings)


@router.get("/success", response_class=HTMLResponse)
def show_success_page() -> Response:
    """Where the browser lands after a login, unless the config names another page."""
    return _message_page(
        "You are logged in to nerd",
        "The command line has your session. You can close this tab.",
        200,
    )


# --- the authorization request


def _authorize_params(fields: dict[str, str]) -> dict[str, str]:
    """The checked parameters of an authorization request."""
    params = {name: fields.get(name, "") for name in AUTHORIZE_FIELDS}
    if params["response_type"] != "code":
        raise UsageError("response_type must be 'code'")
    if not CLIENT_ID.match(params["client_id"]):
        raise UsageError("client_id is missing or malformed")
    _check_redirect_uri(params["redirect_uri"])
    if params["code_challenge_method"] != "S256":
        raise UsageError("code_challenge_method must be 'S256' (PKCE)")
    if not PKCE_CHALLENGE.match(params["code_challenge"]):
        raise UsageError("code_challenge is missing or malformed")
    if not 16 <= len(params["state"]) <= 256:
        raise UsageError("state must be 16 to 256 characters")
    return params


def _check_redirect_uri(uri: str) -> None:
    """Only ``http://<loopback>:<port>/…`` (RFC 8252), so codes never leave the host."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise UsageError("redirect_uri is not a URL") from None
    is_loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if not is_loopback or port is None or "@" in parts.netloc or parts.fragment:
        raise UsageError("redirect_uri must be http://localhost:PORT/… (loopback)")


def _issue_code(session: Session, user: db.User, params: dict[str, str]) -> str:
    code = secrets.token_urlsafe(32)
    session.add(
        db.OAuthCode(
            code_sha256=hash_secret(code),
            user_id=user.id,
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            expires_at=db.utcnow() + timedelta(seconds=CODE_TTL_S),
        )
    )
    session.commit()
    return code


def _redeem_code(session: Session, form: dict[str, str]) -> db.OAuthCode:
    """The code's row, marked used; AuthError unless every binding matches."""
    row = session.get(db.OAuthCode, hash_secret(form.get("code", "")))
    if row is None or row.used_at is not None or row.expires_at <= db.utcnow():
        raise AuthError("the authorization code is not valid or was used already")
    row.used_at = db.utcnow()
    session.commit()
    is_bound = (
        row.client_id == form.get("client_id")
        and row.redirect_uri == form.get("redirect_uri")
        and _is_verifier_of(form.get("code_verifier", ""), row.code_challenge)
    )
    if not is_bound:
        raise AuthError("the authorization code does not match this client")
    return row


def _is_verifier_of(verifier: str, challenge: str) -> bool:
    if not PKCE_VERIFIER.match(verifier):
        return False
    digest = hashlib.sha256(verifier.encode()).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return secrets.compare_digest(expected, challenge)


# --- pages


def _template(name: str) -> Template:
    text = resources.files("nerd.server").joinpath("templates", name).read_text()
    return Template(text)


def _login_page(
    params: dict[str, str], *, username: str, error: str, status: int
) -> Response:
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in params.items()
    )
    error_html = f'<p class="error" id="error">{html.escape(error)}</p>'
    page = _template("login.html").substitute(
        redirect_host=html.escape(urlsplit(params["redirect_uri"]).netloc),
        error=error_html if error else "",
        hidden=hidden,
        username=html.escape(username),
    )
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


def _message_page(title: str, message: str, status: int) -> Response:
    page = _template("message.html").substitute(
        title=html.escape(title), message=html.escape(message)
    )
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
