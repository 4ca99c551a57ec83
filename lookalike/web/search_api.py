"""Search over HTTP: POST an image, or GET from an indexed id, a random one or words (`text`); one call to
ImageIndex.search. Words also go with an upload, an id or random (a mixed query, `text_weight`).

Both routes take the Query and SearchOptions fields by their Python and CLI names, generated from their
declarations (lookalike.web.fields); the API checks them, and its errors become 4xx answers through the app's error
handlers. An unknown parameter is refused, not ignored.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from pydantic import Field

from lookalike.embedders.spec import has_text_tower
from lookalike.errors import RequestError
from lookalike.expansion import EXPANSIONS, EXPLANATIONS
from lookalike.index import ImageIndex
from lookalike.search import Query as SearchQuery
from lookalike.search import SearchOptions, SearchResult
from lookalike.video import frame_of
from lookalike.web.bodies import SearchAnswer
from lookalike.web.deps import served_index, settings_of, slots_of
from lookalike.web.errors import error_responses
from lookalike.web.fields import Fields, fields_model
from lookalike.web.registry import ServedIndex
from lookalike.web.settings import ServerSettings
from lookalike.web.shown import shown_path
from lookalike.web.tuning import prepare_thread
from lookalike.web.uploads import check_upload

router = APIRouter(prefix="/api/indexes/{name}", tags=["search"])
Served = Annotated[ServedIndex, Depends(served_index)]


SearchFields = fields_model("SearchFields", SearchOptions, doc="The fields of SearchOptions as query or form fields.")
SearchFromIndexed = fields_model("SearchFromIndexed", SearchQuery, base=SearchFields,
                                 doc="A search from an indexed image (id), a random one or words (text).")


MAX_EXAMPLES = 20  # images one request may search from (positive and negative, uploads and ids together)


class UploadFields(SearchFields):  # type: ignore[misc,valid-type]  (a generated model)
    image: list[UploadFile] = Field(description="the query image (several: examples of what to find)")
    not_image: list[UploadFile] = Field(default_factory=list,
                                        description="an image the results should be unlike (several allowed)")


# An upload is the query: the other query fields that go with one (words, ...) are offered; id and random are not.
SearchFromUpload = fields_model("SearchFromUpload", SearchQuery, base=UploadFields,
                                leave_out=frozenset({"id", "random", "seed"}), doc="A search by an uploaded image.")


def capabilities(index: ImageIndex) -> dict[str, Any]:
    """What the page may offer for this index: its methods, its scopes (by_class, by_cluster), its labels, and
    whether it can be searched by words (text_search)."""
    return {"methods": index.searcher.methods(), "scopes": index.searcher.scopes(), "filters": True,
            "labels": index.label_counts(),
            "text_search": has_text_tower(index.embedder),
            "expansions": {name: EXPLANATIONS[name] for name in EXPANSIONS}, "expand": SearchOptions.expand,
            "augmentation": index.augmentation_text}


def run_search(served: ServedIndex, query: bytes | list[bytes] | None, asked: Fields,
               negative: list[bytes] | None = None) -> dict[str, Any]:
    """The one search, under the read lock, with the links the page needs."""
    started = time.perf_counter()
    prepare_thread()
    fields = asked.values_of(SearchQuery)
    uploads = query if isinstance(query, list) else [] if query is None else [query]
    ids = sum(len(fields.get(name) or []) for name in ("id", "more_id", "not_id"))
    count = len(uploads) + len(negative or []) + ids
    if count > MAX_EXAMPLES:
        raise RequestError(f"at most {MAX_EXAMPLES} example images (uploads and ids) in one search, not {count}")
    with served.lock.reading():
        result = served.index.search(query, negative=negative or (), **fields, **asked.values_of(SearchOptions))
    return present(result, served.name, started)


def present(result: SearchResult, index_name: str, started: float) -> dict[str, Any]:
    """The result's JSON with thumbnail and file links, and the total time of the request."""
    body = result.to_dict() | {"index": index_name}
    body["query"] = shown_path(body["query"])
    images = f"/api/indexes/{index_name}/images"
    body["query_thumbnail"] = None if result.query_id is None else f"{images}/{result.query_id}/thumbnail"
    for match in body["matches"]:
        match["path"] = shown_path(match["path"])
        match["thumbnail"] = f"{images}/{match['id']}/thumbnail"
        match["file"] = f"{images}/{match['id']}/file"
        if (frame := frame_of(match["path"])) is not None:  # a video's frame: the video, played from its time
            match["video"], match["time"] = f"{images}/{match['id']}/video", frame.time
    body["timings_ms"]["total"] = round((time.perf_counter() - started) * 1e3, 3)
    return body


@router.post("/search", summary="Search by an uploaded image", response_model=SearchAnswer,
             responses=error_responses(400, 404, 413, 422, 503))
def search_by_upload(request: Request, served: Served,
                     asked: Annotated[SearchFromUpload, Form(media_type="multipart/form-data")]) -> dict[str, Any]:
    settings = settings_of(request)
    if len(asked.image) + len(asked.not_image) > MAX_EXAMPLES:
        raise RequestError(f"at most {MAX_EXAMPLES} images in one search")
    images = [read_upload(upload, settings) for upload in asked.image]
    unlike = [read_upload(upload, settings) for upload in asked.not_image]
    with slots_of(request).slot():  # decoding and embedding: a few at a time, or a 503 after a bounded wait
        return run_search(served, images[0] if len(images) == 1 else images, asked, unlike)


def read_upload(upload: UploadFile, settings: ServerSettings) -> bytes:
    """One uploaded image's bytes, checked (size, format, pixels) before anything decodes it."""
    data = upload.file.read(settings.max_upload_bytes + 1)
    return check_upload(data, upload.filename or "upload", settings.max_upload_bytes, settings.max_pixels).data


@router.get("/search", summary="Search from an indexed image (id=N), a random one (random=true, seed=S) or words "
                                "(text=...)",
            description="Give exactly one of `id` and `random=true`, or `text`; `text` may also go with either of "
                        "them (a mixed query). Neither `id`, `random=true` nor `text`, or both `id` and `random=true`, "
                        "is a 422, and so is `text` for an index whose model has no text tower. `id` given several "
                        "times searches for what those images share; `more_id`, `not_id` and `not_text` add examples "
                        "the results should be like or unlike (Rocchio, `negative_weight`); `crop=X,Y,W,H` searches "
                        "from that box of the image, in pixels of the upright photo (outside it: a 422).",
            response_model=SearchAnswer,
            responses=error_responses(404, 422))
def search_from_indexed(served: Served, asked: Annotated[SearchFromIndexed, Query()]) -> dict[str, Any]:
    return run_search(served, None, asked)
