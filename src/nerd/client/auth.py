"""The auth routes: keys, logins, token renewal, worker tokens, projects and users."""

from __future__ import annotations

from nerd.client.http import Api
from nerd.models import (
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

    def me(self) -> User:
        """The logged-in user."""
        return self.api.call("GET", "/users/me", User)
