"""The auth routes: keys, logins, token renewal, worker tokens, projects and users."""

from __future__ import annotations

from urllib.parse import urlencode

from nerd.client.http import API_PREFIX, Api
from nerd.models import (
    Member,
    MemberAdd,
    PasswordLogin,
    Project,
    ProjectCreate,
    PublicKey,
    RefreshRequest,
    TokenPair,
    User,
    WorkerTokenRequest,
)


class AuthClient:
    """Logs in and out, renews tokens, and lists the caller's projects."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def public_key(self) -> PublicKey:
        """The key the server signs tokens with (no login needed)."""
        return self.api.call("GET", "/auth/public-key", PublicKey, anonymous=True)

    def login(self, username: str, password: str) -> TokenPair:
        """Trade a username and password for a token pair."""
        body = PasswordLogin(username=username, password=password)
        return self.api.call(
            "POST", "/auth/token", TokenPair, json=body, anonymous=True
        )

    def authorize_url(self, params: dict[str, str]) -> str:
        """The browser login page for an OAuth2 authorization request."""
        return f"{self.api.endpoint}{API_PREFIX}/oauth/authorize?{urlencode(params)}"

    def exchange_code(
        self, code: str, *, code_verifier: str, redirect_uri: str, client_id: str
    ) -> TokenPair:
        """Trade a browser login's one-time code and PKCE verifier for tokens."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": code_verifier,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.api.call(
            "POST",
            "/oauth/token",
            TokenPair,
            content=urlencode(form).encode(),
            headers=headers,
            anonymous=True,
        )

    def refresh(self, refresh_token: str) -> TokenPair:
        """Trade a refresh token for a fresh access token."""
        body = RefreshRequest(refresh_token=refresh_token)
        return self.api.call(
            "POST", "/auth/refresh", TokenPair, json=body, anonymous=True
        )

    def logout(self, refresh_token: str) -> None:
        """Revoke a refresh token."""
        body = RefreshRequest(refresh_token=refresh_token)
        self.api.request("POST", "/auth/logout", json=body, anonymous=True)

    def worker_token(self, project: str) -> TokenPair:
        """A renewable token that may only use the worker routes of ``project``."""
        body = WorkerTokenRequest(project=project)
        return self.api.call("POST", "/auth/worker-token", TokenPair, json=body)

    def list_projects(self) -> list[Project]:
        """The projects the caller is a member of."""
        return self.api.call("GET", "/projects", list[Project])

    def create_project(self, name: str) -> Project:
        """A new project with the caller as its first member (admins only)."""
        body = ProjectCreate(name=name)
        return self.api.call("POST", "/projects", Project, json=body)

    def list_members(self, project: str) -> list[Member]:
        """The members of ``project``."""
        return self.api.call("GET", f"/projects/{project}/members", list[Member])

    def add_member(self, project: str, username: str) -> Member:
        """Make ``username`` a member of ``project`` (any member may)."""
        body = MemberAdd(username=username)
        return self.api.call("POST", f"/projects/{project}/members", Member, json=body)

    def remove_member(self, project: str, username: str) -> None:
        """Remove ``username`` from ``project``; its last member stays."""
        self.api.request("DELETE", f"/projects/{project}/members/{username}")

    def me(self) -> User:
        """The logged-in user."""
        return self.api.call("GET", "/users/me", User)
