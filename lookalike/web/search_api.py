"""Search over HTTP: POST an image, or GET from an indexed id, a random one or words (`text`); one call to
ImageIndex.search. Words also go with an upload, an id or random (a mixed query, `text_weight`).

Both routes take the SearchOptions by their Python and CLI names (k, method, min_score, where,
path_prefix, by_class, class_confidence, by_cluster); the API checks them, and its errors become
4xx answers through the app's error handlers. An unknown parameter is refused, not ignored.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from lookalike.embedders.spec import has_text_tower
from lookalike.expansion import EXPANSIONS, EXPLANATIONS
from lookalike.index import ImageIndex
from lookalike.search import Query as SearchQuery
from lookalike.search import SearchOptions, SearchResult, option_names
from lookalike.web.bodies import SearchAnswer
from lookalike.web.deps import MAX_ID, served_index, settings_of, slots_of
from lookalike.web.errors import error_responses
from lookalike.web.registry import ServedIndex
from lookalike.web.shown import shown_path
from lookalike.web.tuning import prepare_thread
from lookalike.web.uploads import check_upload

router = APIRouter(prefix="/api/indexes/{name}", tags=["search"])
Served = Annotated[ServedIndex, Depends(served_index)]
MAX_K = 1000
MAX_TEXT = 1000  # characters of a text query (a text tower reads its first 64-77 tokens anyway)
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
    expand: Literal[EXPANSIONS] = Field(SearchOptions.expand, description="re-rank the first answer without labels: "
                                        + "; ".join(f"{name}: {text}" for name, text in EXPLANATIONS.items()))
    expand_neighbours: Annotated[int, Field(ge=1, le=1000)] | SkipJsonSchema[None] = Field(
        None, description="matches the expansion blends or walks over (default: the method's own)")
    expand_alpha: Annotated[float, Field(ge=0, le=100)] | SkipJsonSchema[None] = Field(
        None, description="matches weigh similarity^expand_alpha (default: the method's own)")

    def options(self) -> dict[str, Any]:
        return self.model_dump(include=set(option_names()))


class TextFields(SearchFields):
    """Words to search by (an index whose model has a text tower: see its capabilities' text_search)."""

    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")] | SkipJsonSchema[None] = Field(
        None, description="words to search by; with an image, id or random, they change that query")
    text_weight: float = Field(SearchQuery.text_weight, ge=0, le=1,
                               description="with text and another query: the words' share of the mixed query")

    def query_kinds(self) -> dict[str, Any]:
        return {"text": self.text, "text_weight": self.text_weight if self.text is not None else None}


class SearchFromIndexed(TextFields):
    id: Annotated[int, Field(ge=0, le=MAX_ID)] | SkipJsonSchema[None] = Field(None, description="an indexed image id")
    random: bool = Field(False, description="start from a random indexed image")
    seed: int | SkipJsonSchema[None] = Field(None, description="with random: the same seed picks the same image")


class SearchFromUpload(TextFields):
    image: UploadFile = Field(description="the query image")


def capabilities(index: ImageIndex) -> dict[str, Any]:
    """What the page may offer for this index: its methods, its scopes (by_class, by_cluster), its labels, and
    whether it can be searched by words (text_search)."""
    return {"methods": index.searcher.methods(), "scopes": index.searcher.scopes(), "filters": True,
            "labels": index.label_counts(),
            "text_search": has_text_tower(index.embedder),
            "expansions": {name: EXPLANATIONS[name] for name in EXPANSIONS}, "expand": SearchOptions.expand,
            "augmentation": index.augmentation_text}


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
             responses=error_responses(400, 404, 413, 422, 503))
def search_by_upload(request: Request, served: Served,
                     asked: Annotated[SearchFromUpload, Form(media_type="multipart/form-data")]) -> dict[str, Any]:
    settings = settings_of(request)
    data = asked.image.file.read(settings.max_upload_bytes + 1)
    checked = check_upload(data, asked.image.filename or "upload", settings.max_upload_bytes, settings.max_pixels)
    with slots_of(request).slot():  # decoding and embedding: a few at a time, or a 503 after a bounded wait
        return run_search(served, checked.data, asked, **asked.query_kinds())


@router.get("/search", summary="Search from an indexed image (id=N), a random one (random=true, seed=S) or words "
                                "(text=...)",
            description="Give exactly one of `id` and `random=true`, or `text`; `text` may also go with either of "
                        "them (a mixed query). Neither `id`, `random=true` nor `text`, or both `id` and `random=true`, "
                        "is a 422, and so is `text` for an index whose model has no text tower.",
            response_model=SearchAnswer,
            responses=error_responses(404, 422))
def search_from_indexed(served: Served, asked: Annotated[SearchFromIndexed, Query()]) -> dict[str, Any]:
    return run_search(served, None, asked, id=asked.id, random=asked.random, seed=asked.seed, **asked.query_kinds())
