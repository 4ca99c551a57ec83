"""Error answers: one JSON body for every refusal, `{"detail": text, "request_id": id}`, and its OpenAPI entries."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lookalike.web.logs import request_id
from lookalike.web.shown import shown_text

# what each refusal means, as the API documents it (the body's `detail` says what exactly)
MEANINGS = {
    400: "The request body could not be parsed (malformed JSON or multipart form)",
    401: "This server needs an API token for writes and the request sent none",
    403: "Refused: a wrong API token, a path outside the allowed roots, or an action the server does not allow",
    404: "No such index, image, job or artifact, or an indexed file that is gone or changed",
    409: "Conflicts with the current state (the name exists, a job is running, another model), or another "
         "process is writing the index: `writer_pid` names it; retry once it is done",
    416: "The byte range asked for (a Range header) is not in the file",
    413: "The request body or an uploaded image is larger than the server's limit",
    422: "A parameter or field is invalid or unknown, or an upload is not a usable image",
    503: "An index is not answering, or its folder cannot be written (a read-only file system, a file in the way)",
    507: "The index's disk is full: nothing was half-written; free space and send it again",
}


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    detail: str = Field(description="what is wrong, written for people")
    request_id: str | None = Field(None, description="the request's X-Request-ID, also in the server's logs")
    writer_pid: int | None = Field(None, description="409 only, when another process writes the index: its "
                                                     "process id (absent when it could not be read)")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries of a route that can answer with these error statuses."""
    return {status: {"model": ErrorBody, "description": MEANINGS[status]} for status in statuses}


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   writer_pid: int | None = None) -> JSONResponse:
    body = ErrorBody(detail=shown_text(message), request_id=request_id.get(),  # a message may quote a file name
                     writer_pid=writer_pid)
    return JSONResponse(body.model_dump(exclude={"writer_pid"} if writer_pid is None else set()),
                        status_code=status, headers=headers)
