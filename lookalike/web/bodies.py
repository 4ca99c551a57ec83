"""The JSON bodies the API answers with, as pydantic models: the OpenAPI schema documents them and FastAPI checks
each answer against them. Bodies the web layer makes refuse unknown keys; those that echo lookalike.index
(an index's info, an indexing report) document the keys they have and allow new ones."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from lookalike.search import JSON_NAMES, SearchResult
from lookalike.search import Match as SearchMatch


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(Body):
    status: Literal["ok"]
    version: str


class Readiness(Body):
    status: Literal["ready"]
    indexes: dict[str, int]  # name -> image count


class Capabilities(Body):
    """What the page may offer for an index: its search methods, scopes, label filters and label counts."""

    methods: list[str]
    scopes: dict[str, bool]
    filters: bool
    labels: dict[str, dict[str, int]]  # label name -> value -> images
    text_search: bool  # its model has a text tower: the page may offer a text box
    expansions: dict[str, str]  # each expand option and a line saying what it does
    expand: str  # the default expand
    augmentation: str  # the index's database-side augmentation, in words ("none" when off)


class IndexInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    folder: str
    model: str
    dimension: int
    count: int
    index_type: str
    disk_bytes: int
    capabilities: Capabilities


class Failure(Body):
    path: str
    reason: str


class Report(BaseModel):
    model_config = ConfigDict(extra="allow")
    added: int
    updated: int
    unchanged: int
    removed: int
    failed: int
    seconds: float
    failures: list[Failure]


class Image(Body):
    id: int
    path: str
    width: int
    height: int
    size: int
    labels: dict[str, str]
    thumbnail: str
    file: str


class UploadedImage(Image):
    uploaded_as: str | None


class ImagePage(Body):
    count: int
    offset: int
    images: list[Image]


class Added(Body):
    report: Report
    count: int
    images: list[UploadedImage]


class Job(Body):
    id: str
    index: str
    status: Literal["queued", "running", "done", "failed"]
    done: int
    total: int
    progress: float
    report: Report
    error: str | None
    created: float
    finished: float | None


class StartedJob(Job):
    job_url: str


class Deleted(Body):
    deleted: str


class Removed(Body):
    removed: int
    count: int


class Artifact(Body):
    folder: str
    name: str
    type: str
    url: str


def body_of(cls: type, name: str, replaced: dict[str, Any] | None = None, **added: Any) -> type[Body]:
    """A response body with the fields of a result dataclass (types, defaults and JSON names as `to_dict` gives
    them), `replaced` types for nested results, and the fields the web `added` (links)."""
    hints = get_type_hints(cls)
    declared: dict[str, Any] = {}
    for item in fields(cls):
        annotation = (replaced or {}).get(item.name, hints[item.name])
        if item.default is not MISSING:
            declared[JSON_NAMES.get(item.name, item.name)] = (annotation, item.default)
        elif item.default_factory is not MISSING:
            declared[JSON_NAMES.get(item.name, item.name)] = (annotation, Field(default_factory=item.default_factory))
        else:
            declared[JSON_NAMES.get(item.name, item.name)] = (annotation, ...)
    return create_model(name, __base__=Body, __doc__=cls.__doc__, **declared, **added)  # type: ignore[call-overload]


# A search's answer: lookalike.search's Match and SearchResult, with the links the page needs.
Match = body_of(SearchMatch, "Match", thumbnail=(str, ...), file=(str, ...),
                video=(str | None, Field(None, description="a video frame's video (its path is VIDEO#t=TIME)")),
                time=(float | None, Field(None, description="a video frame's time in the video, in seconds")))
SearchAnswer = body_of(SearchResult, "SearchAnswer", replaced={"matches": list[Match]},  # type: ignore[valid-type]
                       index=(str, ...), query_thumbnail=(str | None, None))
