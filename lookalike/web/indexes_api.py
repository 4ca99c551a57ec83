"""Indexes and their images as HTTP resources: list, inspect, create, delete; add, remove, serve by id."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from lookalike.embedders import AUTOENCODER_PREFIX, available_models
from lookalike.errors import RequestError
from lookalike.index import ImageRecord, IndexReport
from lookalike.index.folder import ARTIFACT_FOLDERS
from lookalike.index.plan import IndexPlan
from lookalike.web.bodies import Added, Artifact, Deleted, Image, ImagePage, IndexInfo, Job, Removed, StartedJob
from lookalike.web.deps import MAX_ID, ImageId, jobs_of, registry_of, require_token, served_index, settings_of, slots_of
from lookalike.web.errors import error_responses
from lookalike.web.fields import Fields, fields_model
from lookalike.web.frames import frame_jpeg, is_frame
from lookalike.web.originals import chunks_of, open_indexed, serving_roots
from lookalike.web.paths import images_under_roots
from lookalike.web.registry import NAME, ServedIndex
from lookalike.web.search_api import capabilities
from lookalike.web.shown import report_json, shown_path, shown_text
from lookalike.web.thumbnails import cached_thumbnail, thumbnail
from lookalike.web.uploads import (
    CheckedImage,
    UploadError,
    check_upload,
    discard_unindexed,
    is_upload,
    save_upload,
    upload_path,
)

router = APIRouter(prefix="/api", tags=["indexes"])
Served = Annotated[ServedIndex, Depends(served_index)]
Write = [Depends(require_token)]
# every write: 401/403 when the server has an API token, 409 while another process writes the index (its pid in
# `writer_pid`), 503 when the index folder cannot be written, 507 when its disk is full
WRITE_ERRORS = (401, 403, 409, 503, 507)
ARTIFACT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".svg": "image/svg+xml", ".html": "text/html"}
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
               ".bmp": "image/bmp", ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff",
               ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif"}
UNKNOWN_TYPE = "application/octet-stream"
# the models a request may name: packaged or named ones, never a file of the server (autoencoder:PATH)
HTTP_MODELS = [model for model in available_models() if not model.startswith(AUTOENCODER_PREFIX)]


def file_responses(media_types: list[str], description: str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry of a route answering with file bytes of one of these media types."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": {media_type: binary for media_type in media_types}}}


class NewIndexName(Fields):
    """IndexPlan's fields by the same names (unset: the API's default), less those naming the server's own files and
    hosts (weights, store) and its hardware (device); models are the packaged or named ones (HTTP_MODELS).
    Strict: a number must be a JSON number and a flag a JSON boolean (`false` is no 0, `1` no `true`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=NAME.pattern, description="folder name under the server's --index-root: 1-64 "
                      "letters, digits, '.', '_' or '-', starting with a letter or digit")
    model: Annotated[str, WithJsonSchema({"type": "string", "enum": HTTP_MODELS})] | None = Field(
        None, description="the embedder (default: lookalike's default model)")

    @field_validator("model")
    @classmethod
    def named_model(cls, model: str | None) -> str | None:
        if model is not None and model not in HTTP_MODELS:
            raise RequestError(f"over HTTP a model must be one of {', '.join(HTTP_MODELS)}, not {model!r}")
        return model

    def create_options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"}, exclude_none=True)


NewIndex = fields_model("NewIndex", IndexPlan, base=NewIndexName, leave_out=frozenset({"model"}), nullable=True)


class PathsToAdd(BaseModel):
    paths: list[str] = Field(min_length=1, description="absolute files or folders under an allowed root")


# --- indexes --------------------------------------------------------------------------------
def describe(served: ServedIndex) -> dict[str, Any]:
    with served.lock.reading():
        info = served.index.info()
        return {"name": served.name, **info, "folder": shown_path(info["folder"]),
                "capabilities": capabilities(served.index)}


@router.get("/indexes", summary="The indexes this server holds", response_model=list[IndexInfo])
def list_indexes(request: Request) -> list[dict[str, Any]]:
    registry = registry_of(request)
    return [describe(registry.get(name)) for name in registry.names()]


@router.get("/indexes/{name}", summary="Model, count, size and search capabilities of one index",
            response_model=IndexInfo, responses=error_responses(404))
def inspect_index(served: Served) -> dict[str, Any]:
    return describe(served)


@router.post("/indexes", status_code=201, dependencies=Write, summary="Create an empty index with a model",
             response_model=IndexInfo,
             description="Fields that depend on each other (a layer and pool the model has, a memory budget the "
                         "index type fits in) are checked when the index is made: 422 says what to change. "
                         "404: the model's weights are not on this server.",
             responses=error_responses(400, *WRITE_ERRORS, 404, 409, 413, 422))
def create_index(request: Request, new: NewIndex) -> dict[str, Any]:
    return describe(registry_of(request).create(new.name, **new.create_options()))


@router.delete("/indexes/{name}", dependencies=Write, summary="Delete an index folder and everything in it",
               response_model=Deleted, responses=error_responses(*WRITE_ERRORS, 404, 409))
def delete_index(request: Request, served: Served) -> dict[str, Any]:
    if jobs_of(request).busy(served.name):
        raise HTTPException(409, f"index {served.name!r} has a running job; wait for it to finish")
    registry_of(request).delete(served.name)
    return {"deleted": served.name}


# --- images -------------------------------------------------------------------------------
def record_or_404(served: ServedIndex, image_id: int) -> ImageRecord:
    record = served.index.record(image_id)
    if record is None:
        raise HTTPException(404, f"no image with id {image_id} in index {served.name!r}")
    return record


def image_json(served: ServedIndex, record: ImageRecord) -> dict[str, Any]:
    base = f"/api/indexes/{served.name}/images/{record.id}"
    return {"id": record.id, "path": shown_path(record.path), "width": record.width, "height": record.height,
            "size": record.size, "labels": served.index.labels(record.id),
            "thumbnail": f"{base}/thumbnail", "file": f"{base}/file"}


@router.get("/indexes/{name}/images", summary="Indexed images, by id, a page at a time",
            response_model=ImagePage, responses=error_responses(404, 422))
def list_images(served: Served, offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    with served.lock.reading():
        page = list(itertools.islice(itertools.islice(served.index.records(), offset, None), limit))
        return {"count": len(served.index), "offset": offset, "images": [image_json(served, r) for r in page]}


@router.get("/indexes/{name}/images/{image_id:int}", summary="One indexed image's record and labels",
            response_model=Image, responses=error_responses(404, 422))
def inspect_image(served: Served, image_id: ImageId) -> dict[str, Any]:
    with served.lock.reading():
        return image_json(served, record_or_404(served, image_id))


@router.get("/indexes/{name}/images/{image_id:int}/thumbnail", summary="A JPEG thumbnail (cached)",
            response_class=FileResponse,
            responses=file_responses(["image/jpeg"], "The thumbnail") | error_responses(403, 404, 422, 503))
def image_thumbnail(request: Request, served: Served, image_id: ImageId) -> FileResponse:
    with served.lock.reading():
        record = record_or_404(served, image_id)
    settings, files = settings_of(request), served.index.files
    path = cached_thumbnail(record, files, settings.thumbnail_side)
    if path is None:
        with slots_of(request).slot():  # decoding: a few at a time, or a 503 after a bounded wait
            path = thumbnail(record, files, settings.thumbnail_side, serving_roots(files, settings.allowed_roots))
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.get("/indexes/{name}/images/{image_id:int}/file", summary="The indexed image file itself",
            response_class=StreamingResponse,
            responses=file_responses([*dict.fromkeys(IMAGE_TYPES.values()), UNKNOWN_TYPE],
                                     "The file's bytes, typed by its extension") | error_responses(403, 404, 422))
def image_file(request: Request, served: Served, image_id: ImageId) -> Response:
    with served.lock.reading():
        record = record_or_404(served, image_id)
    roots = serving_roots(served.index.files, settings_of(request).allowed_roots)
    if is_frame(record):  # a video's frame, decoded from its video
        with slots_of(request).slot():
            return Response(frame_jpeg(record, roots), media_type="image/jpeg")
    handle = open_indexed(record, roots)  # served from this descriptor, the one checked: no re-opening of the path
    return StreamingResponse(chunks_of(handle, record.size), media_type=_media_type(record.path),
                             headers={"Content-Length": str(record.size)})


@router.post("/indexes/{name}/images", dependencies=Write, summary="Add uploaded images (one or a batch)",
             response_model=Added,
             responses={202: {"model": StartedJob, "description": "Queued as a background job (background=true)"}}
             | error_responses(400, *WRITE_ERRORS, 404, 413, 422))
def add_uploads(request: Request, served: Served,
                files: Annotated[list[UploadFile], File(min_length=1, description="images")],
                background: Annotated[bool, Query(description="return at once with a job id to poll")] = False,
                ) -> JSONResponse:
    settings = settings_of(request)
    if len(files) > settings.max_batch_files:
        raise UploadError(413, f"{len(files)} files in one request; the limit is {settings.max_batch_files}")
    checked = [check_upload(f.file.read(settings.max_upload_bytes + 1), f.filename or "upload",
                            settings.max_upload_bytes, settings.max_pixels) for f in files]
    paths = [upload_path(image, served.index.files) for image in checked]
    names = {str(path): f.filename for path, f in zip(paths, files, strict=True)}
    saved = list(dict.fromkeys(paths))  # the same bytes uploaded twice are one file, added once
    with served.journal.batch(saved) as batch:  # named before saved: a crash from here on orphans none
        _save_all(checked, served)
        if background:
            job = jobs_of(request).add_files(served, saved, uploads=True, batch=batch)
            return JSONResponse(job.to_dict() | {"job_url": f"/api/jobs/{job.id}"}, status_code=202)
        with served.lock.writing():
            try:
                report = served.index.add_files(saved)
            finally:
                discard_unindexed(saved, served.index)
            return JSONResponse(added_json(served, report, names))


def _save_all(images: list[CheckedImage], served: ServedIndex) -> None:
    """Save every upload of a batch, or none: one that fails (a full disk) takes the others back."""
    done: list[Path] = []
    try:
        for image in images:
            done.append(save_upload(image, served.index.files))
    except BaseException:
        with served.lock.writing():
            discard_unindexed(done, served.index)
        raise


def added_json(served: ServedIndex, report: IndexReport, names: dict[str, str | None]) -> dict[str, Any]:
    images = []
    for path, original in names.items():
        record = served.index.record_by_path(path)
        if record is not None:
            images.append(image_json(served, record) | {"uploaded_as": original and shown_text(original)})
    return {"report": report_json(report), "count": len(served.index), "images": images}


@router.post("/indexes/{name}/images/from-paths", status_code=202, dependencies=Write,
             summary="Add server-side files or folders under an allowed root, as a background job",
             response_model=StartedJob, responses=error_responses(400, *WRITE_ERRORS, 404, 413, 422))
def add_paths(request: Request, served: Served, body: PathsToAdd) -> dict[str, Any]:
    paths = images_under_roots(body.paths, settings_of(request).allowed_roots)
    job = jobs_of(request).add_files(served, paths, roots=settings_of(request).allowed_roots)
    return job.to_dict() | {"job_url": f"/api/jobs/{job.id}"}


@router.delete("/indexes/{name}/images/{image_id:int}", dependencies=Write, summary="Remove an image by id",
               response_model=Removed, responses=error_responses(*WRITE_ERRORS, 404, 422))
def remove_image(served: Served, image_id: ImageId) -> dict[str, Any]:
    with served.lock.writing():
        record = record_or_404(served, image_id)
        served.index.remove_ids([image_id])
        if is_upload(record.path, served.index.files):
            Path(record.path).unlink(missing_ok=True)  # our own copy; files the user indexed stay untouched
        return {"removed": image_id, "count": len(served.index)}


# --- jobs ---------------------------------------------------------------------------------
@router.get("/jobs", tags=["jobs"], summary="Background additions of this server process",
            response_model=list[Job])
def list_jobs(request: Request) -> list[dict[str, Any]]:
    return [job.to_dict() for job in jobs_of(request).all()]


@router.get("/jobs/{job_id}", tags=["jobs"], summary="Progress and report of one background addition",
            response_model=Job, responses=error_responses(404))
def job_progress(request: Request, job_id: str) -> dict[str, Any]:
    return jobs_of(request).get(job_id).to_dict()


# --- cluster maps and contact sheets written into the index folder by other commands ------
@router.get("/indexes/{name}/artifacts", summary="Cluster maps and contact sheets found in the index folder",
            response_model=list[Artifact], responses=error_responses(404))
def list_artifacts(served: Served) -> list[dict[str, str]]:
    found = []
    for folder in ARTIFACT_FOLDERS:
        for file in _artifact_files(served.folder / folder):
            found.append({"folder": folder, "name": file, "type": ARTIFACT_TYPES[Path(file).suffix.lower()],
                          "url": f"/api/indexes/{served.name}/artifacts/{folder}/{file}"})
    return found


@router.get("/indexes/{name}/artifacts/{folder}/{file}", summary="One cluster map or contact sheet",
            response_class=FileResponse,
            responses=file_responses([*ARTIFACT_TYPES.values()], "The artifact") | error_responses(404))
def artifact(served: Served, folder: str, file: str) -> FileResponse:
    if folder not in ARTIFACT_FOLDERS or file not in _artifact_files(served.folder / folder):
        raise HTTPException(404, f"no artifact {folder}/{file} in index {served.name!r}")
    media_type = ARTIFACT_TYPES[Path(file).suffix.lower()]
    # generated HTML runs sandboxed: its scripts work, but it cannot act as this server's origin
    headers = {"Content-Security-Policy": "sandbox allow-scripts"} if media_type == "text/html" else {}
    return FileResponse(served.folder / folder / file, media_type=media_type, headers=headers)


def _artifact_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_file(follow_symlinks=False) and Path(entry.name).suffix.lower() in ARTIFACT_TYPES)


def _media_type(path: str) -> str:
    return IMAGE_TYPES.get(Path(path).suffix.lower(), UNKNOWN_TYPE)
