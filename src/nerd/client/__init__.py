"""The nerd SDK: one :class:`Client` with ``.auth``, ``.batch`` and ``.data``.

::

    from nerd.client import Client

    with Client.from_environment() as client:
        queue = client.batch.create_queue()
        task = client.batch.start_task(queue.id, ["echo", "hello"])

``Client.from_environment`` reads the same config and session files as the CLI, and
``NERD_JWT`` / ``NERD_JWT_REFRESH_TOKEN`` / ``NERD_PROJECT``, so a worker started with a
worker token and a user's script both work with no arguments.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerd import config
from nerd.client.auth import AuthClient
from nerd.client.batch import BatchClient
from nerd.client.http import Api, TokenSource
from nerd.client.tokens import EnvTokenSource, SessionTokenSource

if TYPE_CHECKING:
    from nerd.client.data import DataClient
    from nerd.client.workloads import SecretClient, WorkloadClient

__all__ = ["Api", "AuthClient", "BatchClient", "Client", "TokenSource"]

log = logging.getLogger(__name__)

ENV_PROJECT = "NERD_PROJECT"
DEFAULT_PROJECT = "default"


class Client:
    """Everything the SDK can do against one nerd server, for one project."""

    def __init__(
        self,
        endpoint: str,
        token_source: TokenSource | None = None,
        project: str | None = None,
        *,
        auth_endpoint: str | None = None,
    ) -> None:
        self.api = Api(endpoint, token=token_source)
        self.token_source = token_source
        self._closeables: list[Api] = [self.api]
        if auth_endpoint and auth_endpoint.rstrip("/") != self.api.endpoint:
            self._closeables.append(Api(auth_endpoint, token=token_source))
        self.auth = AuthClient(self._closeables[-1])
        self._project = project

    @classmethod
    def from_environment(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        session_file: str | os.PathLike[str] | None = None,
        project: str | None = None,
    ) -> Client:
        """A client set up from the config file, the session and the environment."""
        cfg = config.load_config(config_file)
        session = config.load_session(session_file)
        refresh_api = Api(cfg.auth.api_endpoint)
        source = token_source_for(cfg, session.path, AuthClient(refresh_api))
        chosen = project or os.environ.get(ENV_PROJECT) or session.project or None
        client = cls(
            cfg.nerd_api_endpoint,
            source,
            chosen,
            auth_endpoint=cfg.auth.api_endpoint,
        )
        client._closeables.append(refresh_api)
        return client

    @property
    def project(self) -> str:
        """The project in use: the one given, else the token's, else the default."""
        if self._project is None:
            self._project = self._default_project()
            log.debug("project.defaulted project=%s", self._project)
        return self._project

    @cached_property
    def batch(self) -> BatchClient:
        return BatchClient(self.api, self.project)

    @cached_property
    def data(self) -> DataClient:
        from nerd.client.data import DataClient

        return DataClient(self.api, self.project)

    @cached_property
    def workloads(self) -> WorkloadClient:
        from nerd.client.workloads import WorkloadClient

        return WorkloadClient(self.api, self.project)

    @cached_property
    def secrets(self) -> SecretClient:
        from nerd.client.workloads import SecretClient

        return SecretClient(self.api, self.project)

    def close(self) -> None:
        for api in self._closeables:
            api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _default_project(self) -> str:
        """A worker token names its project; a user gets their first project."""
        claims: dict[str, Any] = getattr(self.token_source, "claims", {})
        if isinstance(claims.get("project"), str):
            return str(claims["project"])
        projects = self.auth.list_projects()
        return projects[0].name if projects else DEFAULT_PROJECT


def token_source_for(
    cfg: config.Config, session_file: Path, auth: AuthClient
) -> EnvTokenSource | SessionTokenSource:
    """``NERD_JWT`` if it is set, else the session file."""
    key, issuer = cfg.auth.public_key, cfg.auth.issuer
    from_env = EnvTokenSource.from_environ(key, auth.refresh, issuer=issuer)
    if from_env is not None:
        return from_env
    return SessionTokenSource(session_file, key, auth.refresh, issuer=issuer)
