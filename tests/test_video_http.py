"""Video frames over HTTP: search answers carry the video and time, thumbnails and /file decode the frame, /video
serves the video (in ranges, as browsers seek), all read beneath the served roots while the video is the one indexed."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for_job
from fastapi.testclient import TestClient
from PIL import Image
from videos import write_still, write_video

from lookalike.index import ImageIndex
from lookalike.web import ServerSettings, create_app

pytest.importorskip("av")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    video = write_video(tmp_path / "media" / "clip.mp4", [0, 1, 2])
    write_still(tmp_path / "media" / "photo.png", 3)
    with ImageIndex.create(tmp_path / "films") as index:
        index.add_folder(tmp_path / "media")
    with TestClient(create_app([tmp_path / "films"], ServerSettings())) as client:
        yield client, video


def search_by(client: TestClient, still: bytes) -> list[dict]:
    response = client.post("/api/indexes/films/search", files={"image": ("still.png", still, "image/png")},
                           data={"k": "4"})
    assert response.status_code == 200, response.json()
    return response.json()["matches"]


def still_of(scene: int, tmp_path: Path) -> bytes:
    return write_still(tmp_path / f"still{scene}.png", scene).read_bytes()


def test_a_search_answer_gives_a_frame_its_video_and_time(served, tmp_path: Path):
    client, video = served
    matches = search_by(client, still_of(2, tmp_path))
    best = matches[0]
    assert best["path"] == f"{video}#t=4.000" and best["time"] == 4.0
    assert best["video"] == f"/api/indexes/films/images/{best['id']}/video"
    photo = next(match for match in matches if match["path"].endswith("photo.png"))
    assert photo["video"] is None and photo["time"] is None


def test_the_thumbnail_and_file_of_a_frame_are_that_frame_decoded(served, tmp_path: Path):
    client, _ = served
    best = search_by(client, still_of(2, tmp_path))[0]  # scene 2: a blue disc on yellow
    for link in (best["thumbnail"], best["file"]):
        response = client.get(link)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(response.content)).convert("RGB")
        red, green, blue = picture.getpixel((picture.width // 2, picture.height // 2))
        assert blue > 180 and red < 90, (link, red, green, blue)
        assert picture.getpixel((1, 1))[2] < 100  # a yellow corner
    assert Image.open(io.BytesIO(client.get(best["file"]).content)).size == (64, 64)


def test_the_video_is_served_whole_or_in_the_range_asked(served, tmp_path: Path):
    client, video = served
    best = search_by(client, still_of(1, tmp_path))[0]
    whole = client.get(best["video"])
    assert whole.status_code == 200 and whole.content == video.read_bytes()
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(best["video"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == video.read_bytes()[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{video.stat().st_size}"
    tail = client.get(best["video"], headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == video.read_bytes()[-5:]
    outside = client.get(best["video"], headers={"Range": f"bytes={video.stat().st_size}-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{video.stat().st_size}"


def test_a_photo_has_no_video_and_a_changed_video_is_not_served(served, tmp_path: Path):
    client, video = served
    matches = search_by(client, still_of(3, tmp_path))
    photo = next(match for match in matches if match["path"].endswith("photo.png"))
    assert client.get(f"/api/indexes/films/images/{photo['id']}/video").status_code == 404
    frame = next(match for match in matches if match["video"])
    write_video(video, [4])  # replaced on disk after indexing
    os.utime(video, (2_000_000, 2_000_000))
    for link in (frame["video"], frame["file"], frame["thumbnail"]):
        response = client.get(link)
        assert response.status_code == 404 and "changed on disk" in response.json()["detail"], link


def test_a_video_added_by_server_path_is_indexed_as_its_frames(tmp_path: Path):
    video = write_video(tmp_path / "roots" / "films" / "clip.webm", [0, 1, 2])
    ImageIndex.create(tmp_path / "films").close()
    settings = ServerSettings(allowed_roots=[tmp_path / "roots"])
    with TestClient(create_app([tmp_path / "films"], settings)) as client:
        started = client.post("/api/indexes/films/images/from-paths", json={"paths": [str(video.parent)]})
        assert started.status_code == 202, started.json()
        job = wait_for_job(client, started.json()["job_url"])
        assert job["status"] == "done" and job["report"]["added"] == 3, job
        best = search_by(client, still_of(1, tmp_path))[0]
        assert (best["path"], best["time"]) == (f"{video}#t=2.000", 2.0)
