"""The server application: ``create_app(settings)`` builds one FastAPI app.

At creation it migrates the database, loads (or makes) the signing key, and on a
first start makes the admin user. While it runs, a sweeper expires lapsed leases
every ``sweep_interval_s`` so that task states are current without any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from nerd import __version__, errors
from nerd.server import db, queue
from nerd.server.bootstrap import ensure_first_user, login_instructions
from nerd.server.keys import ensure_signing_key
from nerd.server.migrate import upgrade_database
from nerd.server.routes import (
    auth,
    oauth,
    projects,
    queues,
    secrets,
    tasks,
    workers,
    workloads,
)
from nerd.server.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_HTTP_ERRORS: dict[int, type[errors.NerdError]] = {
    400: errors.UsageError,
    401: errors.AuthError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    405: errors.UsageError,
    409: errors.ConflictError,
    422: errors.UsageError,
}


def create_app(settings: Settings) -> FastAPI:
    """A ready app for ``settings``; the database is migrated before it returns."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # the database, keys and objects are in it
    engine = db.make_engine(settings.database_url)
    upgrade_database(engine)
    app = FastAPI(title="nerd", version=__version__, lifespan=_lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = db.make_sessionmaker(engine)
    app.state.write_sessions = db.make_sessionmaker(engine, is_write=True)
    app.state.signing_key = ensure_signing_key(settings.keys_dir)
    _add_routers(app)
    _add_error_handlers(app)
    first = ensure_first_user(app.state.sessions, settings.admin_password_path)
    if first is not None:
        sys.stderr.write(login_instructions(first, settings.endpoint))
    return app


def _add_routers(app: FastAPI) -> None:
    for module in (auth, oauth, projects, queues, tasks, workers):
        app.include_router(module.router, prefix=API_PREFIX)
    for module in (secrets, workloads):
        app.include_router(module.router, prefix=API_PREFIX)
    try:
        from nerd.server.routes import datasets
    except ImportError:
        log.warning("routes.missing routes=datasets: the data plane is not installed")
        return
    app.include_router(datasets.router, prefix=API_PREFIX)


# --- errors: one JSON body for every failure


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.NerdError, _nerd_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(error: errors.NerdError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.http_status == 401 else None
    return JSONResponse(error.to_body(), status_code=error.http_status, headers=headers)


async def _nerd_error(request: Request, exc: errors.NerdError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(
    request: Request, exc: RequestValidationError
) -> JSONResponse:
    problems = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return error_response(errors.UsageError("invalid request: " + "; ".join(problems)))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    cls = _HTTP_ERRORS.get(exc.status_code, errors.NerdError)
    message = f"no route {request.method} {request.url.path}"
    if exc.status_code not in (404, 405):
        message = str(exc.detail)
    error = cls(message)
    response = JSONResponse(error.to_body(), status_code=exc.status_code)
    return response


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # A client killed or cut off while sending its body (an upload stopped with
    # Ctrl-C): nothing went wrong here, and nobody reads the answer.
    log.info("request.client_gone method=%s path=%s", request.method, request.url.path)
    return error_response(errors.UsageError("the client went away mid-request"))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("request.failed method=%s path=%s", request.method, request.url.path)
    return error_response(errors.NerdError("internal server error; see the server log"))


# --- the lease sweeper


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    sweeper = asyncio.create_task(_sweep_forever(app.state.sessions, settings))
    log.info("server.started endpoint=%s", settings.endpoint)
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        app.state.engine.dispose()
        log.info("server.stopped endpoint=%s", settings.endpoint)


async def _sweep_forever(sessions: sessionmaker[Session], settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            await run_in_threadpool(sweep_once, sessions, settings)
        except Exception:
            log.exception("sweep.failed")


def sweep_once(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Expire every lapsed lease now; how many runs expired."""
    total = 0
    with sessions() as session:
        while (count := queue.expire_lapsed(session)) > 0:
            total += count
            if count < queue.SWEEP_BATCH:
                break
        queue.mark_silent_workers_gone(session, settings.worker_silence_s)
    return total
