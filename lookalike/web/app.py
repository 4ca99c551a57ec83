"""The FastAPI app: routes from indexes_api, search_api and maps_api, errors as JSON, limits, logs, the pages."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.errors import LookalikeError, NotFoundError
from lookalike.faults import DiskFullError, UnwritableError
from lookalike.images import ImageError
from lookalike.index import IndexBusyError, IndexFormatError, LockFileError, ModelMismatchError
from lookalike.version import __version__
from lookalike.web import explain_api, indexes_api, maps_api, search_api, video_api
from lookalike.web.bodies import Health, Readiness
from lookalike.web.docs import add_redoc
from lookalike.web.errors import error_response, error_responses
from lookalike.web.fields import MAX_K
from lookalike.web.jobs import JobQueue
from lookalike.web.logs import RequestLog
from lookalike.web.paths import RefusedPathError
from lookalike.web.registry import IndexRegistry
from lookalike.web.settings import ServerSettings
from lookalike.web.uploads import UploadError
from lookalike.web.work import WorkSlots

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("lookalike.web")

# domain errors -> HTTP status; the message is the exception's own (they are written for people). A plain
# KeyError or ValueError is a bug, not the user's: it is logged and answered 500, never a 404 or 422
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (RefusedPathError, 403), (PermissionError, 403), (FileNotFoundError, 404),
    (FileExistsError, 409), (ModelMismatchError, 409), (ImageError, 422), (IndexFormatError, 422),
    (NotADirectoryError, 422), (DiskFullError, 507), (UnwritableError, 503), (LockFileError, 503),
    (NotFoundError, 404), (LookalikeError, 422),  # the user's errors (lookalike.errors)
]
BUSY_RETRY_SECONDS = "1"  # another process's write: most take a moment (a chunk of an indexing run)


def create_app(index_folders: Sequence[str | os.PathLike[str]], settings: ServerSettings | None = None) -> FastAPI:
    """An app serving these index folders (opened now, closed at shutdown) under these limits."""
    settings = settings or ServerSettings.from_env()
    registry = IndexRegistry(settings.index_root)
    for folder in index_folders:
        registry.open(folder)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("serving", extra={"indexes": registry.names(), "writes_need_token": bool(settings.api_token)})
        yield
        app.state.jobs.shutdown()
        registry.close()

    # /docs and /redoc from Swagger UI and ReDoc files shipped in a package: they work offline (no CDN)
    app = FastAPIOffline(title="lookalike", version=__version__, lifespan=lifespan, redoc_url=None,
                         description="Content-based image retrieval: search indexed photos by example.")
    add_redoc(app)  # with a content policy that keeps ReDoc's vendor logo from being fetched
    app.state.settings, app.state.registry, app.state.jobs = settings, registry, JobQueue()
    for name in registry.names():  # what a server that died left: its jobs run again, its orphans go
        app.state.jobs.resume(registry.get(name))
    app.state.slots = WorkSlots(settings.decode_slots, settings.decode_wait_seconds)
    app.include_router(indexes_api.router)
    app.include_router(search_api.router)
    app.include_router(explain_api.router)
    app.include_router(maps_api.router)
    app.include_router(video_api.router)
    _add_error_handlers(app)
    _add_pages(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestLog)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def rejected(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, UploadError)
        return error_response(error.status, error.message)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(error.status_code, str(error.detail), headers)

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(422, f"invalid request: {'; '.join(_problem(e) for e in error.errors())}")

    async def busy(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, IndexBusyError)
        return error_response(409, str(error), {"Retry-After": BUSY_RETRY_SECONDS}, writer_pid=error.pid)

    app.add_exception_handler(UploadError, rejected)
    app.add_exception_handler(IndexBusyError, busy)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    for kind, status in ERROR_STATUS:
        app.add_exception_handler(kind, _handler_for(status))


def _allowed_methods(request: Request) -> str:
    """Every method a route of this path takes: Starlette's own 405 names only the first route that matched it."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _problem(error: dict[str, Any]) -> str:
    """One validation error as `field: what is wrong`; a parameter the route does not take is named as such."""
    field = ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0])
    if error["type"] == "extra_forbidden":
        return f"{field}: not a parameter of this request"
    return f"{field}: {error['msg']}"


def _handler_for(status: int):  # noqa: ANN202 - a Starlette exception handler
    async def handle(request: Request, error: Exception) -> JSONResponse:
        return error_response(status, str(error))
    return handle


def _add_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def search_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/maps", include_in_schema=False)
    def maps_page() -> FileResponse:
        return FileResponse(STATIC / "maps.html")

    @app.get("/health", tags=["service"], summary="The process is up", response_model=Health)
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/api/limits", tags=["service"], summary="The most one upload or search may be",
             response_model=Limits)
    def limits(request: Request) -> dict[str, int]:
        settings: ServerSettings = request.app.state.settings
        return {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                "max_k": MAX_K}

    @app.get("/ready", tags=["service"], summary="Every index is open and answering", response_model=Readiness,
             responses=error_responses(503))
    def ready(request: Request) -> JSONResponse:
        registry: IndexRegistry = request.app.state.registry
        counts = {}
        try:
            for name in registry.names():
                counts[name] = len(registry.get(name).index)
        except Exception as error:  # any failure means not ready; say which
            return error_response(503, f"index not answering: {type(error).__name__}: {error}")
        return JSONResponse({"status": "ready", "indexes": counts})


class Limits(BaseModel):
    """The server's limits a client checks before sending (the server checks them again)."""

    model_config = ConfigDict(extra="forbid")
    max_upload_bytes: int
    max_pixels: int
    max_k: int


class BodyLimit:
    """Refuse request bodies above max_bytes with 413: early from Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body larger than the limit of {self.max_bytes:,} bytes"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, self._message())(scope, receive, send)
