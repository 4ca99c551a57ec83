"""Why two photos are similar, over HTTP: one call to ImageIndex.explain, answered with its picture (image/png).

GET takes two indexed ids (`a`, `b`); POST takes each photo as an upload (`a_image`, `b_image`) or an id (`a`, `b`),
so the page can explain an uploaded query against an indexed match. An index whose model has no spatial feature map
(CLIP, handcrafted) is a 422 saying so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from lookalike.errors import RequestError
from lookalike.web.deps import MAX_ID, served_index, settings_of, slots_of
from lookalike.web.errors import error_responses
from lookalike.web.registry import ServedIndex
from lookalike.web.search_api import read_upload
from lookalike.web.tuning import prepare_thread

router = APIRouter(prefix="/api/indexes/{name}", tags=["explain"])
Served = Annotated[ServedIndex, Depends(served_index)]
PNG = {200: {"content": {"image/png": {}}, "description": "both photos side by side, the heat over each"}}
Photo = int | bytes


class Pair(BaseModel):
    """Two indexed images."""

    model_config = ConfigDict(extra="forbid")
    a: int = Field(ge=0, le=MAX_ID, description="the first photo: an indexed id (the query)")
    b: int = Field(ge=0, le=MAX_ID, description="the second photo: an indexed id (a match)")


class UploadedPair(BaseModel):
    """Two photos, each an upload or an indexed id."""

    model_config = ConfigDict(extra="forbid")
    a: int | None = Field(None, ge=0, le=MAX_ID, description="the first photo as an indexed id")
    b: int | None = Field(None, ge=0, le=MAX_ID, description="the second photo as an indexed id")
    a_image: UploadFile | None = Field(None, description="the first photo as an upload (the query)")
    b_image: UploadFile | None = Field(None, description="the second photo as an upload")


def explained(served: ServedIndex, a: Photo, b: Photo) -> Response:
    prepare_thread()
    with served.lock.reading():
        picture = served.index.explain(a, b).png()
    return Response(picture, media_type="image/png")


@router.get("/explain", summary="Why two indexed images are similar: heat maps over both, as a PNG",
            response_class=Response, responses=PNG | error_responses(404, 422))
def explain_indexed(request: Request, served: Served, pair: Annotated[Pair, Query()]) -> Response:
    with slots_of(request).slot():
        return explained(served, pair.a, pair.b)


@router.post("/explain", summary="Why two photos (uploads or indexed ids) are similar: heat maps over both, as a PNG",
             response_class=Response, responses=PNG | error_responses(400, 404, 413, 422, 503))
def explain_uploaded(request: Request, served: Served,
                     pair: Annotated[UploadedPair, Form(media_type="multipart/form-data")]) -> Response:
    photos = [one_photo(request, name, getattr(pair, name), getattr(pair, f"{name}_image")) for name in ("a", "b")]
    with slots_of(request).slot():
        return explained(served, photos[0], photos[1])


def one_photo(request: Request, name: str, image_id: int | None, upload: UploadFile | None) -> Photo:
    if (image_id is None) == (upload is None):
        raise RequestError(f"give the photo {name} once: an indexed id ({name}) or an upload ({name}_image)")
    return image_id if upload is None else read_upload(upload, settings_of(request))
