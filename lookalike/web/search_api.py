"""Search over HTTP: by uploaded image, by indexed id, or random; same arguments as ImageIndex.search.

Options that other parts of lookalike may add (`method=` for learned similarity and `where=` label filters
on ImageIndex.search; classify-then-search as lookalike.classifier.search_by_class) are used only when the
client gives them, and refused with a clear 422 when this installation does not have them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile

from lookalike.index import ImageIndex
from lookalike.search import METRICS, SearchResult
from lookalike.web.deps import served_index, settings_of
from lookalike.web.registry import ServedIndex
from lookalike.web.tuning import prepare_thread
from lookalike.web.uploads import check_upload

router = APIRouter(prefix="/api/indexes/{name}", tags=["search"])
Served = Annotated[ServedIndex, Depends(served_index)]
MAX_K = 1000


def search_parameters() -> set[str]:
    return set(inspect.signature(ImageIndex.search).parameters)


def _optional(module: str, name: str) -> Any:
    """Something another lookalike module may provide (learned similarity, classifier), or None."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def learned_methods(index: ImageIndex) -> list[str]:
    """Learned similarity methods trained for this index (lookalike.similarity.methods), if any."""
    trained = _optional("lookalike.similarity.methods", "trained_methods")
    return [m for m in (trained(index) if trained else []) if m not in METRICS]


def classify_then_search(index: ImageIndex) -> Callable[..., SearchResult] | None:
    """lookalike.classifier.search_by_class when a classifier is trained for this index, else None."""
    search = _optional("lookalike.organise.classifier", "search_by_class")
    marker = _optional("lookalike.organise.classifier", "DESCRIPTION_FILE")
    return search if search and marker and (index.folder / marker).exists() else None


def capabilities(index: ImageIndex) -> dict[str, Any]:
    """What the page may offer for this index: methods, filters, classify-then-search."""
    supported = search_parameters()
    return {
        "metrics": list(METRICS),
        "methods": learned_methods(index) if "method" in supported else [],
        "filters": "where" in supported,
        "by_class": classify_then_search(index) is not None,
    }


def extra_options(method: str | None, where: list[str] | None) -> dict[str, Any]:
    """Only the options the client gave, each checked to exist in this ImageIndex.search."""
    given: dict[str, Any] = {}
    if method:
        given["method"] = method
    if where:
        given["where"] = _parse_where(where)
    missing = [name for name in given if name not in search_parameters()]
    if missing:
        raise HTTPException(422, f"this lookalike cannot search with {', '.join(missing)} yet "
                                 "(not supported by ImageIndex.search)")
    return given


def _parse_where(conditions: list[str]) -> dict[str, str]:
    parsed = {}
    for condition in conditions:
        name, sep, value = condition.partition("=")
        if not sep or not name.strip():
            raise HTTPException(422, f"filter {condition!r} must look like name=value (e.g. label=dress)")
        parsed[name.strip()] = value.strip()
    return parsed


def run_search(served: ServedIndex, query: bytes | int | None, k: int, metric: str, min_score: float | None,
               options: dict[str, Any], by_class: bool | None = None, random_query: bool = False,
               seed: int | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    if metric not in METRICS:
        raise HTTPException(422, f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    search: Callable[..., SearchResult] = served.index.search
    if by_class:
        found = classify_then_search(served.index)
        if found is None:
            raise HTTPException(422, "by_class (classify, then search) needs a classifier trained for this index "
                                     "(lookalike train-classifier)")
        search = functools.partial(found, served.index)
    prepare_thread()
    with served.lock.reading():
        if random_query:
            query = served.index.random_id(seed)
        result = search(query, k=k, metric=metric, min_score=min_score, **options)
    return present(result, served.name, query if isinstance(query, int) else None, started)


def present(result: SearchResult, index_name: str, query_id: int | None, started: float) -> dict[str, Any]:
    body = result.to_dict()
    body["index"] = index_name
    body["query_id"] = query_id
    if query_id is not None:
        body["query_thumbnail"] = f"/api/indexes/{index_name}/images/{query_id}/thumbnail"
    for match in body["matches"]:
        match["thumbnail"] = f"/api/indexes/{index_name}/images/{match['id']}/thumbnail"
        match["file"] = f"/api/indexes/{index_name}/images/{match['id']}/file"
    body["timings_ms"]["total"] = round((time.perf_counter() - started) * 1e3, 3)
    return body


@router.post("/search", summary="Search by an uploaded image")
def search_by_upload(
    request: Request, served: Served, image: Annotated[UploadFile, File(description="the query image")],
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10, metric: Annotated[str, Form()] = "cosine",
    min_score: Annotated[float | None, Form()] = None, method: Annotated[str | None, Form()] = None,
    where: Annotated[list[str] | None, Form()] = None, by_class: Annotated[bool | None, Form()] = None,
) -> dict[str, Any]:
    settings = settings_of(request)
    data = image.file.read(settings.max_upload_bytes + 1)
    checked = check_upload(data, image.filename or "upload", settings.max_upload_bytes, settings.max_pixels)
    return run_search(served, checked.data, k, metric, min_score, extra_options(method, where), by_class)


@router.get("/search", summary="Search by an indexed image id, or from a random one")
def search_by_id_or_random(
    served: Served, id: Annotated[int | None, Query(description="an indexed image id")] = None,  # noqa: A002
    random: Annotated[bool, Query(description="start from a random indexed image")] = False,
    seed: int | None = None, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10, metric: str = "cosine",
    min_score: float | None = None, method: str | None = None,
    where: Annotated[list[str] | None, Query()] = None, by_class: bool | None = None,
) -> dict[str, Any]:
    if (id is None) == (not random):
        raise HTTPException(422, "give exactly one query: id=N or random=true (or POST an image)")
    return run_search(served, id, k, metric, min_score, extra_options(method, where), by_class,
                      random_query=random, seed=seed)
