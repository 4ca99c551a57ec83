"""What the search and maps pages ask the API for beyond searching: the server's limits, an index's map as points,
and how far to trust an answer (in process, FastAPI's TestClient, real demo photos)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.index import ImageIndex
from lookalike.organise.mapping import map_index
from lookalike.web import ServerSettings, create_app
from lookalike.web.fields import MAX_K

MiB = 1024 * 1024


def client_for(index: ImageIndex, **settings: object) -> TestClient:
    return TestClient(create_app([index.folder], ServerSettings(**settings)))


def by_folder(index: ImageIndex) -> dict[int, str]:
    return {record.id: Path(record.path).parent.name for record in index.records()}


def test_limits_are_the_servers_own_settings(demo_clone: ImageIndex) -> None:
    with client_for(demo_clone, max_upload_bytes=5 * MiB, max_pixels=1_000_000) as client:
        assert client.get("/api/limits").json() == {"max_upload_bytes": 5 * MiB, "max_pixels": 1_000_000,
                                                    "max_k": MAX_K}
    with client_for(demo_clone) as client:
        assert client.get("/api/limits").json()["max_upload_bytes"] == ServerSettings().max_upload_bytes


def test_the_map_gives_each_images_point_scaled_to_the_unit_square_with_its_label(demo_clone: ImageIndex) -> None:
    demo_clone.set_labels({image_id: {"label": folder} for image_id, folder in by_folder(demo_clone).items()})
    map_index(demo_clone, thumbnails=False, html_page=False)
    name = demo_clone.folder.name
    with client_for(demo_clone) as client:
        answer = client.get(f"/api/indexes/{name}/map").json()
        assert answer["colour_by"] == "label"
        points = answer["points"]
        assert sorted(p["id"] for p in points) == sorted(demo_clone.ids().tolist())
        assert {p["id"]: p["group"] for p in points} == by_folder(demo_clone)
        xs, ys = np.array([p["x"] for p in points]), np.array([p["y"] for p in points])
        assert xs.min() == ys.min() == 0 and xs.max() == ys.max() == 1
        removed = points[0]["id"]
        demo_clone.remove_ids([removed])  # removed after the map was made: left out, the rest unchanged
        after = client.get(f"/api/indexes/{name}/map").json()["points"]
        assert [p["id"] for p in after] == [p["id"] for p in points[1:]]


def test_an_index_without_a_map_answers_404_saying_how_to_make_one(demo_clone: ImageIndex) -> None:
    with client_for(demo_clone) as client:
        response = client.get(f"/api/indexes/{demo_clone.folder.name}/map")
    assert response.status_code == 404 and "lookalike map" in response.json()["detail"]


@pytest.mark.parametrize("content", [b"not an npz file", "wrong keys", "wrong shape"])
def test_a_damaged_map_is_a_422_not_a_server_error(demo_clone: ImageIndex, content: object) -> None:
    target = demo_clone.files.map_points
    target.parent.mkdir(parents=True, exist_ok=True)
    if content == "wrong keys":
        np.savez(target, something=np.zeros(3))
    elif content == "wrong shape":
        np.savez(target, ids=np.arange(3), points=np.zeros((3, 3)))
    else:
        target.write_bytes(content)
    with client_for(demo_clone) as client:
        response = client.get(f"/api/indexes/{demo_clone.folder.name}/map")
    assert response.status_code == 422 and "run `lookalike map --index INDEX` again" in response.json()["detail"]


def test_search_answer_says_how_far_to_trust_it(demo_clone: ImageIndex, tmp_path: Path) -> None:
    """HTTP carries the search's own judgement: similarity and same_photo per match, low_confidence and note."""
    name = demo_clone.folder.name
    photo = demo_clone.record(int(demo_clone.ids()[0])).path
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(noise)
    with client_for(demo_clone) as client:
        same = client.post(f"/api/indexes/{name}/search", files={"image": Path(photo).read_bytes()}).json()
        doubtful = client.post(f"/api/indexes/{name}/search", files={"image": noise.read_bytes()}).json()
    assert same["matches"][0]["similarity"] >= 0.999 and same["matches"][0]["same_photo"]
    assert same["low_confidence"] is False and "same photo" in same["note"]
    assert doubtful["low_confidence"] is True and "does not hold" in doubtful["note"]
    assert not any(match["same_photo"] for match in doubtful["matches"])


def euclidean_score(cosine: float) -> float:
    return 1.0 / (1.0 + math.sqrt(max(0.0, 2.0 - 2.0 * cosine)))


def test_the_euclidean_floor_is_the_cosine_floor_on_the_euclidean_scale(demo_clone: ImageIndex) -> None:
    """Both scores of the same pair of unit vectors: the floors agree on which answers are doubtful."""
    with client_for(demo_clone) as client:
        query = demo_clone.ids()[0]
        cosine = client.get(f"/api/indexes/{demo_clone.folder.name}/search?id={query}&k=3").json()["matches"]
        euclid = client.get(f"/api/indexes/{demo_clone.folder.name}/search?id={query}&k=3&method=euclidean").json()
    assert [m["id"] for m in cosine] == [m["id"] for m in euclid["matches"]]
    for a, b in zip(cosine, euclid["matches"], strict=True):
        assert euclidean_score(a["score"]) == pytest.approx(b["score"], abs=1e-4)
