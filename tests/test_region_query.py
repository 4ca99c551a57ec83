"""Region queries (Query.crop): a box of the query photo, in pixels of the upright image, searched as a photo of its
own; through the Python API, the CLI (--crop X,Y,W,H) and HTTP (crop=x,y,w,h), on a real index of generated photos."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, write_photo
from PIL import Image

from lookalike.errors import RequestError
from lookalike.images import load_image
from lookalike.index import ImageIndex

BIG, SMALL = 0, 5  # the composite: photo 0 blown up to 480x360 with photo 5 (160x120) pasted at PASTED
PASTED = (300, 220, 160, 120)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageIndex, Path]]:
    """An index of eight generated photos, and a composite of two of them (not indexed)."""
    root = tmp_path_factory.mktemp("region")
    for seed in range(8):
        write_photo(root / "photos" / f"photo{seed}.png", seed)
    composite = Image.open(root / "photos" / f"photo{BIG}.png").resize((480, 360))
    composite.paste(Image.open(root / "photos" / f"photo{SMALL}.png"), PASTED[:2])
    composite.save(root / "composite.png")
    with ImageIndex.create(root / "index") as index:
        index.add_folder(root / "photos")
        yield index, root / "composite.png"


def names(result) -> list[str]:
    return [Path(match.path).stem for match in result.matches]


def test_the_crop_finds_the_pasted_photo_that_the_whole_composite_does_not(scene):
    index, composite = scene
    whole = names(index.search(str(composite), k=3))
    cropped = index.search(str(composite), crop=PASTED, k=3)
    assert whole[0] == f"photo{BIG}" and f"photo{SMALL}" not in whole[:1]
    assert names(cropped)[0] == f"photo{SMALL}"
    assert cropped.query.endswith("[300,220,160,120]")


def test_a_crop_of_uploaded_bytes_is_the_same_search_as_of_the_file(scene):
    index, composite = scene
    from_bytes = index.search(composite.read_bytes(), crop="300,220,160,120", k=3)
    assert names(from_bytes) == names(index.search(str(composite), crop=PASTED, k=3))


def test_a_crop_of_an_indexed_id_cuts_its_file_and_leaves_it_out(scene):
    index, _ = scene
    record = next(r for r in index.records() if Path(r.path).stem == f"photo{SMALL}")
    result = index.search(id=record.id, crop=(0, 0, 80, 60), k=8)
    assert record.id not in [m.id for m in result.matches]
    assert result.query_id == record.id and result.query.endswith("[0,0,80,60]")
    assert result.matches[0].similarity < 0.999  # a box of the photo, not its stored vector


@pytest.mark.parametrize("crop", ["300,220,181,120", "0,0,0,10", "-1,0,10,10", "1,2,3", "a,b,c,d", (0, 0, 1.5, 9),
                                  "475,355,8,8"])
def test_a_crop_outside_the_photo_or_empty_is_a_request_error(scene, crop):
    index, composite = scene
    with pytest.raises(RequestError, match="crop"):
        index.search(str(composite), crop=crop)


def test_a_crop_of_words_or_a_vector_is_a_request_error(scene):
    index, _ = scene
    with pytest.raises(RequestError, match="crop cuts a box"):
        index.search(index.vectors()[1][0], crop="0,0,10,10")


def test_the_box_is_in_pixels_of_the_upright_photo(tmp_path):
    sideways = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 160x120, shown turned a quarter: 120x160
    Image.open(write_photo(tmp_path / "p.png", 1)).save(sideways, exif=exif)
    assert load_image(sideways, target_side=32, crop=(0, 100, 120, 60)).pixels.size[1] < 160
    with pytest.raises(RequestError, match="120x160 photo"):
        load_image(sideways, crop=(0, 0, 160, 120))


def test_a_small_box_is_decoded_finely_enough_for_the_network(tmp_path):
    photo = write_photo(tmp_path / "large.png", 2, size=(2000, 1500))
    box = load_image(photo, target_side=224, crop=(100, 100, 300, 250))
    assert (box.width, box.height) == (300, 250)
    assert min(box.pixels.size) >= 224


def test_the_cli_searches_from_a_crop(scene):
    index, composite = scene
    result = subprocess.run([sys.executable, "-m", "lookalike", "search", str(composite), "--crop", "300,220,160,120",
                             "--index", str(index.folder), "-k", "3", "--json"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert Path(json.loads(result.stdout)["matches"][0]["path"]).stem == f"photo{SMALL}"
    outside = subprocess.run([sys.executable, "-m", "lookalike", "search", str(composite), "--crop", "0,0,999,9",
                              "--index", str(index.folder)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert outside.returncode == 2 and "not inside the 480x360 photo" in outside.stderr


def test_http_searches_from_a_crop_of_an_upload_and_of_an_id(scene):
    from fastapi.testclient import TestClient

    from lookalike.web import ServerSettings, create_app

    index, composite = scene
    with TestClient(create_app([index.folder], ServerSettings())) as client:
        url = f"/api/indexes/{index.folder.name}/search"
        answer = client.post(url, files={"image": ("c.png", composite.read_bytes(), "image/png")},
                             data={"crop": "300,220,160,120", "k": "3"})
        assert answer.status_code == 200, answer.json()
        assert Path(answer.json()["matches"][0]["path"]).stem == f"photo{SMALL}"
        small = next(r.id for r in index.records() if Path(r.path).stem == f"photo{SMALL}")
        by_id = client.get(url, params={"id": small, "crop": "0,0,80,60"})
        assert by_id.status_code == 200 and small not in [m["id"] for m in by_id.json()["matches"]]
        outside = client.post(url, files={"image": ("c.png", composite.read_bytes(), "image/png")},
                              data={"crop": "400,0,100,100"})
        assert outside.status_code == 422 and "not inside" in outside.json()["detail"]
        malformed = client.get(url, params={"id": small, "crop": "1,2"})
        assert malformed.status_code == 422
