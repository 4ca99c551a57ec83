"""Indexed video frames over HTTP: a frame's video file, for the page to play from the frame's time.

The video is served like any indexed file (beneath a root through no link, only while it is still the one indexed),
and in byte ranges when asked (`Range: bytes=START-END`): browsers seek a video by asking for the part they need."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import StreamingResponse

from lookalike.video import MEDIA_TYPES, frame_of
from lookalike.web.deps import ImageId, served_index, settings_of
from lookalike.web.errors import error_responses
from lookalike.web.originals import chunks_of, open_indexed, serving_roots
from lookalike.web.registry import ServedIndex

router = APIRouter(prefix="/api", tags=["indexes"])
Served = Annotated[ServedIndex, Depends(served_index)]
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
BINARY = {"schema": {"type": "string", "format": "binary"}}
VIDEO_TYPES = list(dict.fromkeys(MEDIA_TYPES.values()))


@router.get("/indexes/{name}/images/{image_id:int}/video", summary="The video an indexed frame comes from",
            response_class=StreamingResponse,
            responses={status: {"description": what, "content": {media: BINARY for media in VIDEO_TYPES}}
                       for status, what in ((200, "The video's bytes"), (206, "The part a Range header asked for"))}
            | error_responses(403, 404, 416, 422))
def frame_video(request: Request, served: Served, image_id: ImageId,
                range_: Annotated[str | None, Header(alias="range")] = None) -> StreamingResponse:
    with served.lock.reading():
        record = served.index.record(image_id)
    frame = None if record is None else frame_of(record.path)
    if record is None or frame is None:
        raise HTTPException(404, f"no video frame with id {image_id} in index {served.name!r}")
    start, end = _asked(range_, record.size)
    handle = open_indexed(record, serving_roots(served.index.files, settings_of(request).allowed_roots))
    handle.seek(start)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    if range_ is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    return StreamingResponse(chunks_of(handle, end - start), status_code=206 if range_ is not None else 200,
                             media_type=MEDIA_TYPES[Path(frame.video).suffix.lower()], headers=headers)


def _asked(header: str | None, size: int) -> tuple[int, int]:
    """The byte range [start, end) a Range header asks for (the whole file without one); 416 when unsatisfiable."""
    if header is None:
        return 0, size
    found = RANGE.match(header.strip())
    if found is None or found[1] == found[2] == "":
        raise HTTPException(416, f"unsupported range {header!r}: give one range, bytes=START-END",
                            headers={"Content-Range": f"bytes */{size}"})
    if found[1] == "":  # the last N bytes
        return max(0, size - int(found[2])), size
    start, end = int(found[1]), min(size, int(found[2]) + 1) if found[2] else size
    if start >= size or end <= start:
        raise HTTPException(416, f"range {header!r} is outside the {size}-byte video",
                            headers={"Content-Range": f"bytes */{size}"})
    return start, end
