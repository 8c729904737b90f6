"""``nerd login --browser``: the real CLI, the real server pages, headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from auth_helpers import (
    ALICE,
    NerdRunner,
    Spawned,
    WebDriver,
    env_without_browser,
    has_chromium,
    read_login_url,
)

from helpers import RunningServer, error_of, free_port

SUCCESS_PATH = "/api/v1/oauth/success"


@pytest.fixture
def browser_config(configured: Path) -> Path:
    """The test config, with the CLI's callback server on a free loopback port."""
    document = json.loads(configured.read_text())
    document["auth"]["oauth_localserver"] = f"localhost:{free_port()}"
    configured.write_text(json.dumps(document))
    return configured


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not has_chromium():
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver")
    driver = WebDriver(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.stop()


@pytest.fixture
def spawn_nerd() -> Iterator[Spawned]:
    """Start nerd in the background; what a failed test left running is ended."""
    spawned = Spawned()
    yield spawned
    spawned.end()


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def test_browser_login_in_chromium_logs_in_and_lands_on_the_success_page(
    browser_config: Path,
    alice_password: str,
    server: RunningServer,
    chromium: WebDriver,
    nerd: NerdRunner,
    home: Path,
    spawn_nerd: Spawned,
) -> None:
    process = spawn_nerd(["login", "--browser"], env_without_browser())
    url = read_login_url(process)

    chromium.go(url)
    chromium.type_into("#username", ALICE)
    chromium.type_into("#password", alice_password)
    chromium.click("#login")
    landed = chromium.wait_for_url(server.url + SUCCESS_PATH)
    code, stderr = _finish(process)

    assert code == 0, stderr
    assert f"Logged in as '{ALICE}'" in stderr
    assert landed == server.url + SUCCESS_PATH
    assert chromium.text_of("#title") == "You are logged in to nerd"
    session = json.loads((home / ".nerd" / "session.json").read_text())
    assert session["jwt"]["token"] and session["jwt"]["refresh_token"]
    assert nerd("project", "list", "--output", "json").exit_code == 0


def test_a_wrong_password_in_chromium_shows_the_form_again_with_the_reason(
    browser_config: Path,
    alice_password: str,
    chromium: WebDriver,
    spawn_nerd: Spawned,
) -> None:
    process = spawn_nerd(
        ["login", "--browser", "--timeout-s", "30"], env_without_browser()
    )
    url = read_login_url(process)

    chromium.go(url)
    chromium.type_into("#username", ALICE)
    chromium.type_into("#password", "not-the-password")
    chromium.click("#login")
    error = chromium.text_of("#error")
    chromium.type_into("#password", alice_password)
    chromium.click("#login")
    code, stderr = _finish(process)

    assert error == "wrong username or password"
    assert code == 0, stderr


def test_the_login_url_is_printed_with_pkce_state_and_a_loopback_redirect(
    browser_config: Path,
    server: RunningServer,
    spawn_nerd: Spawned,
) -> None:
    process = spawn_nerd(
        ["login", "--browser", "--timeout-s", "2"], env_without_browser()
    )
    url = read_login_url(process)
    code, stderr = _finish(process)

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(server.url + "/api/v1/oauth/authorize?")
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and len(query["state"]) >= 32
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    assert code == 4
    assert "nerd: error: the browser login timed out after 2 s" in stderr


def test_a_taken_port_exits_2_saying_the_port_is_taken(
    browser_config: Path, nerd: NerdRunner
) -> None:
    port = int(
        json.loads(browser_config.read_text())["auth"]["oauth_localserver"].split(":")[
            1
        ]
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()

        result = nerd("login", "--browser")

    assert result.exit_code == 2
    assert (
        f"cannot listen on localhost:{port} for the browser login: the port is taken"
        in result.stderr
    )
    assert "auth.oauth_localserver" in result.stderr


def test_a_local_server_off_this_machine_is_refused(
    configured: Path, nerd: NerdRunner
) -> None:
    document = json.loads(configured.read_text())
    document["auth"]["oauth_localserver"] = "example.com:9876"
    configured.write_text(json.dumps(document))

    result = nerd("login", "--browser")

    assert result.exit_code == 2
    assert (
        "auth.oauth_localserver 'example.com:9876' is not on this machine"
        in result.stderr
    )


def test_a_callback_with_a_wrong_state_exits_4_and_stores_nothing(
    browser_config: Path,
    alice_password: str,
    home: Path,
    spawn_nerd: Spawned,
) -> None:
    process = spawn_nerd(["login", "--browser"], env_without_browser())
    url = read_login_url(process)
    with httpx.Client() as browser:
        location = _log_in_on_the_page(browser, url, alice_password)
        forged = location.replace("state=", "state=x")

        answer = browser.get(forged)
    code, stderr = _finish(process)

    assert answer.status_code == 400
    assert code == 4
    assert "came back with a wrong state" in stderr
    assert not (home / ".nerd" / "session.json").exists()


def test_the_browser_is_sent_to_the_configured_success_url(
    browser_config: Path,
    alice_password: str,
    server: RunningServer,
    spawn_nerd: Spawned,
) -> None:
    document = json.loads(browser_config.read_text())
    document["auth"]["oauth_success_url"] = "https://example.org/welcome"
    browser_config.write_text(json.dumps(document))
    process = spawn_nerd(["login", "--browser"], env_without_browser())
    url = read_login_url(process)
    with httpx.Client() as browser:
        location = _log_in_on_the_page(browser, url, alice_password)

        answer = browser.get(location)
    code, stderr = _finish(process)

    assert code == 0, stderr
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://example.org/welcome"


def _log_in_on_the_page(browser: httpx.Client, url: str, password: str) -> str:
    """Submit the login form as a browser would; the redirect back to the CLI."""
    page = browser.get(url)
    assert page.status_code == 200 and 'name="password"' in page.text
    form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    form.update(username=ALICE, password=password)
    answer = browser.post(url.split("?")[0], data=form)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


# --- the server's side of the flow, over HTTP


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize_form(
    challenge: str, redirect_uri: str = "http://127.0.0.1:9/cb"
) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "nerd-cli",
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(16),
    }


def _code_for(server: RunningServer, password: str, form: dict[str, str]) -> str:
    answer = httpx.post(
        server.api + "/oauth/authorize",
        data={**form, "username": ALICE, "password": password},
    )
    assert answer.status_code == 303, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == [form["state"]]
    return query["code"][0]


def _redeem(
    server: RunningServer, code: str, verifier: str, redirect_uri: str
) -> httpx.Response:
    return httpx.post(
        server.api + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "client_id": "nerd-cli",
        },
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        "http://evil.example:80/cb",
        "http://127.0.0.1/cb",
        "http://user@127.0.0.1:9/cb",
        "javascript:alert(1)",
    ],
)
def test_a_redirect_off_the_loopback_is_refused_with_a_page_and_no_redirect(
    server: RunningServer, redirect_uri: str
) -> None:
    form = _authorize_form(_pkce()[1], redirect_uri)

    shown = httpx.get(server.api + "/oauth/authorize", params=form)
    posted = httpx.post(
        server.api + "/oauth/authorize", data={**form, "username": "a", "password": "b"}
    )

    for answer in (shown, posted):
        assert answer.status_code == 400
        assert "redirect_uri must be http://localhost:PORT" in answer.text
        assert "location" not in answer.headers


def test_an_authorization_without_pkce_is_refused(server: RunningServer) -> None:
    form = _authorize_form(_pkce()[1])
    form["code_challenge_method"] = "plain"

    answer = httpx.get(server.api + "/oauth/authorize", params=form)

    assert answer.status_code == 400
    assert "code_challenge_method must be &#x27;S256&#x27; (PKCE)" in answer.text


def test_a_code_trades_once_for_tokens_and_never_again(
    server: RunningServer, alice_password: str
) -> None:
    verifier, challenge = _pkce()
    form = _authorize_form(challenge)
    code = _code_for(server, alice_password, form)

    first = _redeem(server, code, verifier, form["redirect_uri"])
    second = _redeem(server, code, verifier, form["redirect_uri"])

    assert first.status_code == 200
    assert set(first.json()) >= {"access_token", "refresh_token"}
    assert "was used already" in error_of(second, 401, "unauthenticated")


def test_a_code_with_the_wrong_verifier_is_401_and_spent(
    server: RunningServer, alice_password: str
) -> None:
    verifier, challenge = _pkce()
    form = _authorize_form(challenge)
    code = _code_for(server, alice_password, form)

    wrong = _redeem(server, code, _pkce()[0], form["redirect_uri"])
    right_after = _redeem(server, code, verifier, form["redirect_uri"])

    assert "does not match this client" in error_of(wrong, 401, "unauthenticated")
    assert "was used already" in error_of(right_after, 401, "unauthenticated")


def test_a_code_for_another_redirect_uri_is_401(
    server: RunningServer, alice_password: str
) -> None:
    verifier, challenge = _pkce()
    form = _authorize_form(challenge)
    code = _code_for(server, alice_password, form)

    answer = _redeem(server, code, verifier, "http://127.0.0.1:10/cb")

    assert "does not match this client" in error_of(answer, 401, "unauthenticated")


def test_an_unknown_grant_type_is_400(server: RunningServer) -> None:
    answer = httpx.post(server.api + "/oauth/token", data={"grant_type": "password"})

    assert "grant_type must be 'authorization_code'" in error_of(answer, 400, "usage")


def test_the_login_page_cannot_be_framed(server: RunningServer) -> None:
    answer = httpx.get(
        server.api + "/oauth/authorize", params=_authorize_form(_pkce()[1])
    )

    assert answer.status_code == 200
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
