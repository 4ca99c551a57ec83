"""Search over HTTP: POST an image, or GET from an indexed id or a random one; one call to ImageIndex.search.

Both routes take the SearchOptions by their Python and CLI names (k, method, min_score, where,
path_prefix, by_class, class_confidence, by_cluster); the API checks them, and its errors become
4xx answers through the app's error handlers. An unknown parameter is refused, not ignored.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from lookalike.index import ImageIndex
from lookalike.search import SearchOptions, SearchResult, option_names
from lookalike.web.bodies import SearchAnswer
from lookalike.web.deps import MAX_ID, served_index, settings_of
from lookalike.web.errors import error_responses
from lookalike.web.registry import ServedIndex
from lookalike.web.shown import shown_path
from lookalike.web.tuning import prepare_thread
from lookalike.web.uploads import check_upload

router = APIRouter(prefix="/api/indexes/{name}", tags=["search"])
Served = Annotated[ServedIndex, Depends(served_index)]
MAX_K = 1000
Count = Annotated[int, Field(ge=1)]
WHERE_TERM = r"^[^=]*[^=\s][^=]*=.*\S"  # NAME=VALUE, neither blank (what search.parse_where reads)


class SearchFields(BaseModel):
    """The fields of SearchOptions as query or form fields; defaults and checks are the API's own. An unset field
    is left out of the request (a query or form cannot carry null), so the schema does not offer null."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(SearchOptions.k, ge=1, le=MAX_K, description="how many matches")
    method: str = Field(SearchOptions.method, min_length=1,
                        description="cosine, euclidean or a learned similarity of the index (see its capabilities)")
    min_score: float | SkipJsonSchema[None] = Field(None, description="drop matches scoring below this")
    where: list[Annotated[str, Field(pattern=WHERE_TERM)]] = Field(
        default_factory=list, description="label filter NAME=VALUE, repeatable: a name given twice means either value")
    path_prefix: str | SkipJsonSchema[None] = Field(None, description="keep images under this folder")
    by_class: Count | SkipJsonSchema[None] = Field(None, description="classify the query, search within up to N "
                                                                    "likely classes (an index with a classifier)")
    class_confidence: float = Field(SearchOptions.class_confidence, gt=0, le=1,
                                    description="with by_class: widen until the classes hold this probability")
    by_cluster: Count | SkipJsonSchema[None] = Field(None, description="search the N clusters nearest the query "
                                                                      "(a clustered index)")

    def options(self) -> dict[str, Any]:
        return self.model_dump(include=set(option_names()))


class SearchFromIndexed(SearchFields):
    id: Annotated[int, Field(ge=0, le=MAX_ID)] | SkipJsonSchema[None] = Field(None, description="an indexed image id")
    random: bool = Field(False, description="start from a random indexed image")
    seed: int | SkipJsonSchema[None] = Field(None, description="with random: the same seed picks the same image")


class SearchFromUpload(SearchFields):
    image: UploadFile = Field(description="the query image")


def capabilities(index: ImageIndex) -> dict[str, Any]:
    """What the page may offer for this index: its methods, its scopes (by_class, by_cluster), its labels."""
    return {"methods": index.methods(), "scopes": index.scopes(), "filters": True, "labels": index.label_counts()}


def run_search(served: ServedIndex, query: bytes | None, fields: SearchFields, **kinds: Any) -> dict[str, Any]:
    """The one search, under the read lock, with the links the page needs."""
    started = time.perf_counter()
    prepare_thread()
    with served.lock.reading():
        result = served.index.search(query, **kinds, **fields.options())
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
    body["timings_ms"]["total"] = round((time.perf_counter() - started) * 1e3, 3)
    return body


@router.post("/search", summary="Search by an uploaded image", response_model=SearchAnswer,
             responses=error_responses(400, 404, 413, 422))
def search_by_upload(request: Request, served: Served,
                     asked: Annotated[SearchFromUpload, Form(media_type="multipart/form-data")]) -> dict[str, Any]:
    settings = settings_of(request)
    data = asked.image.file.read(settings.max_upload_bytes + 1)
    checked = check_upload(data, asked.image.filename or "upload", settings.max_upload_bytes, settings.max_pixels)
    return run_search(served, checked.data, asked)


@router.get("/search", summary="Search from an indexed image (id=N) or a random one (random=true, seed=S)",
            description="Give exactly one of `id` and `random=true`: neither, or both, is a 422.",
            response_model=SearchAnswer,
            responses=error_responses(404, 422))
def search_from_indexed(served: Served, asked: Annotated[SearchFromIndexed, Query()]) -> dict[str, Any]:
    return run_search(served, None, asked, id=asked.id, random=asked.random, seed=asked.seed)
