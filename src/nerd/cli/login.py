"""``nerd login`` and ``nerd logout``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from nerd import config
from nerd.cli.context import get_state
from nerd.cli.output import Printer
from nerd.errors import KeyMismatchError, UsageError

if TYPE_CHECKING:
    from nerd.client.auth import AuthClient
    from nerd.models import PublicKey, TokenPair

PROMPT_INTRO = "Please enter your nerd username and password."


def register(cli: click.Group) -> None:
    cli.add_command(login_command)
    cli.add_command(logout_command)


@click.command("login")
@click.option("-u", "--username", help="Log in as this user instead of asking.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin (scripts)."
)
@click.option(
    "--browser", is_flag=True, help="Log in through the browser (OAuth2 with PKCE)."
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="How long --browser waits for the browser to come back.",
)
def login_command(
    username: str | None, password_stdin: bool, browser: bool, timeout_s: float
) -> None:
    """Log in to the nerd server and keep the session in the session file."""
    if browser and (username or password_stdin):
        raise UsageError("--browser takes no --username or --password-stdin")
    state = get_state()
    cfg = state.config()
    printer = state.printer()
    if browser:
        pair, server_key = _log_in_with_browser(cfg, printer, timeout_s)
    else:
        pair, server_key = _log_in(cfg, printer, username, password_stdin)
    _store_login(cfg, state.load_session(), pair, server_key, printer)


def _log_in_with_browser(
    cfg: config.Config, printer: Printer, timeout_s: float
) -> tuple[TokenPair, PublicKey]:
    """Check the server's key, then log in through the browser."""
    from nerd.cli.oauth import log_in_with_browser
    from nerd.client.auth import AuthClient
    from nerd.client.http import Api

    with Api(cfg.auth.api_endpoint) as api:
        auth = AuthClient(api)
        server_key = _checked_server_key(cfg, auth, printer)
        pair = log_in_with_browser(
            auth,
            localserver=cfg.auth.oauth_localserver,
            client_id=cfg.auth.client_id,
            success_url=cfg.auth.oauth_success_url,
            timeout_s=timeout_s,
            say=printer.message,
        )
        return pair, server_key


def _log_in(
    cfg: config.Config,
    printer: Printer,
    username: str | None,
    password_stdin: bool,
) -> tuple[TokenPair, PublicKey]:
    """Ask for credentials, check the server's key, trade them for tokens."""
    from nerd.client.auth import AuthClient
    from nerd.client.http import Api

    username, password = _credentials(username, password_stdin)
    with Api(cfg.auth.api_endpoint) as api:
        auth = AuthClient(api)
        server_key = _checked_server_key(cfg, auth, printer)
        return auth.login(username, password), server_key


def _checked_server_key(
    cfg: config.Config, auth: AuthClient, printer: Printer
) -> PublicKey:
    """The server's key; it must be the configured one, if one is configured."""
    from nerd.client.tokens import fingerprint, is_same_key

    server_key = auth.public_key()
    served = fingerprint(server_key.public_key)
    if not cfg.auth.public_key:
        printer.message(f"The server at {auth.api.endpoint} signs with key {served}")
        return server_key
    if not is_same_key(cfg.auth.public_key, server_key.public_key):
        raise KeyMismatchError(
            f"the server at {auth.api.endpoint} signs with key {served}, "
            f"not the configured {fingerprint(cfg.auth.public_key)}",
            hint="if the server's key was replaced on purpose, remove "
            f"auth.public_key from {cfg.source} and log in again",
        )
    _check_issuer(cfg, auth, server_key.issuer)
    return server_key


def _check_issuer(cfg: config.Config, auth: AuthClient, served: str) -> None:
    """With a pinned key, the server must also name the issuer the config expects."""
    if served != cfg.auth.issuer:
        raise KeyMismatchError(
            f"the server at {auth.api.endpoint} issues tokens as '{served}', "
            f"not the configured '{cfg.auth.issuer}'",
            hint=f"if that is the right server, set auth.issuer in {cfg.source}",
        )


def _credentials(username: str | None, password_stdin: bool) -> tuple[str, str]:
    if password_stdin:
        return _credentials_from_stdin(username)
    if not sys.stdin.isatty():
        raise UsageError(
            "cannot ask for a password: stdin is not a terminal",
            hint="use --username NAME --password-stdin",
        )
    click.echo(PROMPT_INTRO, err=True)
    if not username:
        username = str(click.prompt("Username", err=True)).strip()
    password = str(click.prompt("Password", hide_input=True, err=True))
    return username, password


def _credentials_from_stdin(username: str | None) -> tuple[str, str]:
    if not username:
        raise UsageError("--password-stdin needs --username")
    password = sys.stdin.read().rstrip("\r\n")
    if not password:
        raise UsageError("no password on stdin")
    return username, password


def _store_login(
    cfg: config.Config,
    session: config.Session,
    pair: TokenPair,
    server_key: PublicKey,
    printer: Printer,
) -> None:
    """Check the token's signature, pin the key if new, then save the session."""
    from nerd.client.tokens import verify_token

    issuer = cfg.auth.issuer if cfg.auth.public_key else server_key.issuer
    claims = verify_token(pair.access_token, server_key.public_key, issuer=issuer)
    if not cfg.auth.public_key:
        _pin_key(cfg, server_key, printer)
    session.set_tokens(pair.access_token, pair.refresh_token)
    config.save_session(session)
    printer.message(f"Logged in as '{claims['sub']}' at {cfg.auth.api_endpoint}")
    printer.outcome({"username": claims["sub"], "endpoint": cfg.auth.api_endpoint})


def _pin_key(cfg: config.Config, server_key: PublicKey, printer: Printer) -> None:
    cfg.set_public_key(server_key.public_key, issuer=server_key.issuer)
    if cfg.path is None:
        printer.message(
            f"The config comes from {config.CONFIG_ENV_JSON}: "
            "add this key as auth.public_key there to keep it"
        )
        return
    config.save_config(cfg)
    printer.message(f"Stored the key in {cfg.path}")


@click.command("logout")
def logout_command() -> None:
    """Log out: revoke the session on the server and forget its tokens."""
    state = get_state()
    printer = state.printer()
    session = state.load_session()
    if not session.is_logged_in:
        printer.message("Not logged in.")
        printer.outcome({"logged_out": False})
        return
    _revoke(state.config(), session.refresh_token, printer)
    session.clear_tokens()
    config.save_session(session)
    printer.message("Logged out.")
    printer.outcome({"logged_out": True})


def _revoke(cfg: config.Config, refresh_token: str, printer: Printer) -> None:
    """Best effort: the local tokens go even if the server cannot be told."""
    from nerd.client.auth import AuthClient
    from nerd.client.http import Api
    from nerd.errors import NerdError

    if not refresh_token:
        return
    try:
        with Api(cfg.auth.api_endpoint) as api:
            AuthClient(api).logout(refresh_token)
    except NerdError as exc:
        printer.message(
            f"warning: the server did not revoke the session: {exc.message}"
        )
