"""The JSON bodies the API answers with, as pydantic models: the OpenAPI schema documents them and FastAPI checks
each answer against them. Bodies the web layer makes refuse unknown keys; those that echo lookalike.index
(an index's info, an indexing report) document the keys they have and allow new ones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


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


class Match(Body):
    id: int
    path: str
    score: float
    similarity: float | None = None  # the plain cosine of query and match (1.0: the same photo)
    same_photo: bool = False
    labels: dict[str, str]
    thumbnail: str
    file: str


class SearchAnswer(Body):
    index: str
    query: str
    query_id: int | None
    query_thumbnail: str | None = None  # when the query is an indexed image
    method: str
    timings_ms: dict[str, float]
    predicted_class: dict[str, float] | None
    low_confidence: bool = False  # the best match is not close: see note
    note: str | None = None  # one line on how far to trust the answer
    matches: list[Match]
