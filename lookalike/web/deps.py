"""What every route needs from the app: its settings, the served index named in the path, image ids, the token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header, HTTPException, Path, Request

from lookalike.errors import NotFoundError
from lookalike.web.jobs import JobQueue
from lookalike.web.registry import IndexRegistry, ServedIndex
from lookalike.web.settings import ServerSettings
from lookalike.web.work import WorkSlots

MAX_ID = 2**63 - 1  # the largest integer SQLite holds: a larger id is refused here, not overflowed in the store
ImageId = Annotated[int, Path(ge=0, le=MAX_ID, description="an indexed image's id")]


def settings_of(request: Request) -> ServerSettings:
    return request.app.state.settings


def slots_of(request: Request) -> WorkSlots:
    return request.app.state.slots


def registry_of(request: Request) -> IndexRegistry:
    return request.app.state.registry


def jobs_of(request: Request) -> JobQueue:
    return request.app.state.jobs


def served_index(name: str, request: Request) -> ServedIndex:
    try:
        return registry_of(request).get(name)
    except NotFoundError as error:  # only the registry's own "no index named": any other KeyError is a bug (500)
        raise HTTPException(404, str(error)) from None


def require_token(request: Request, authorization: str | None = Header(None),
                  x_api_token: str | None = Header(None)) -> None:
    """Every write needs the token when one is configured: `Authorization: Bearer T` or `X-API-Token: T`."""
    expected = settings_of(request).api_token
    if not expected:
        return
    given = x_api_token
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    if not given:
        raise HTTPException(401, "this server requires an API token for writes: send 'Authorization: Bearer TOKEN'",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, "wrong API token")
