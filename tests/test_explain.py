"""ImageIndex.explain: heat maps of which regions make two photos similar, from the index's own network."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY
from PIL import Image

from lookalike.embedders import get_embedder
from lookalike.embedders.maps import NoFeatureMapError
from lookalike.errors import NotFoundError, RequestError
from lookalike.explain import cell_shares, peak
from lookalike.images import load_image
from lookalike.index import ImageIndex

OBJECT_SIDE = 150
SCENE = (480, 320)


def first_photo(label: str) -> Path:
    return sorted((DEMO_GALLERY / label).glob("*.jpg"))[0]


def composite(background: Path, place: tuple[int, int], target: Path) -> tuple[int, int, int, int]:
    """The same shoe pasted at `place` into a scene made of another photo; the shoe's box (left, top, right, bottom)."""
    shoe = Image.open(first_photo("shoes")).convert("RGB")
    shoe = shoe.resize((OBJECT_SIDE, round(OBJECT_SIDE * shoe.height / shoe.width)))
    scene = Image.open(background).convert("RGB").resize(SCENE)
    scene.paste(shoe, place)
    scene.save(target, quality=95)
    return place[0], place[1], place[0] + shoe.width, place[1] + shoe.height


def inside(point: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def test_the_heat_peaks_on_the_object_two_photos_share_in_both(demo_index: ImageIndex, tmp_path: Path) -> None:
    pairs = [(("hat", (20, 30)), ("pants", (300, 140))), (("dress", (300, 20)), ("skirt", (10, 150)))]
    for (first, at_a), (second, at_b) in pairs:
        box_a = composite(first_photo(first), at_a, tmp_path / "a.jpg")
        box_b = composite(first_photo(second), at_b, tmp_path / "b.jpg")
        explanation = demo_index.explain(tmp_path / "a.jpg", (tmp_path / "b.jpg").read_bytes())
        assert explanation.heat_a.shape == (SCENE[1], SCENE[0]) and explanation.heat_b.shape == (SCENE[1], SCENE[0])
        assert inside(peak(explanation.heat_a), box_a), (first, peak(explanation.heat_a), box_a)
        assert inside(peak(explanation.heat_b), box_b), (second, peak(explanation.heat_b), box_b)


def test_the_cell_shares_add_up_to_the_cosine_of_the_pooled_maps() -> None:
    rng = np.random.default_rng(0)
    maps_a, maps_b = rng.random((16, 5, 7), np.float32), rng.random((16, 4, 9), np.float32)
    shares_a, shares_b, similarity = cell_shares(maps_a, maps_b)
    pooled_a, pooled_b = maps_a.mean(axis=(1, 2)), maps_b.mean(axis=(1, 2))
    cosine = pooled_a @ pooled_b / np.linalg.norm(pooled_a) / np.linalg.norm(pooled_b)
    assert similarity == pytest.approx(cosine, rel=1e-5)
    assert shares_a.sum() == pytest.approx(cosine, rel=1e-4) and shares_b.sum() == pytest.approx(cosine, rel=1e-4)


def test_the_feature_map_is_the_one_the_vector_is_pooled_from(tmp_path: Path) -> None:
    embedder = get_embedder("efficientnet-lite0", precision="float32")
    side = embedder.input_side
    Image.open(first_photo("hat")).convert("RGB").resize((side, side)).save(tmp_path / "square.png")
    photo = load_image(tmp_path / "square.png", side)
    maps = embedder.feature_map(photo)
    vector = embedder.embed_batch(embedder.preprocess(photo)[None])[0]
    pooled = maps.mean(axis=(1, 2))
    assert maps.shape == (embedder.dimension, side // 32, side // 32)
    assert np.allclose(pooled / np.linalg.norm(pooled), vector, atol=1e-4)


def test_indexed_ids_are_explained_and_the_picture_is_written(demo_index: ImageIndex, tmp_path: Path) -> None:
    first, second = [record.id for record in list(demo_index.records())[:2]]
    explanation = demo_index.explain(first, second, out=tmp_path / "pair.png")
    written = Image.open(tmp_path / "pair.png")
    assert written.format == "PNG" and written.size == explanation.picture.size
    assert written.width > written.height  # the two photos side by side
    assert Image.open(io.BytesIO(explanation.png())).size == written.size
    assert -1.0 <= explanation.similarity <= 1.0


def test_bad_photos_are_refused_by_name(demo_index: ImageIndex) -> None:
    with pytest.raises(NotFoundError, match="no image with id 999999"):
        demo_index.explain(999999, 1)
    with pytest.raises(RequestError, match="a file, its bytes or an indexed id"):
        demo_index.explain(1.5, 1)  # type: ignore[arg-type]


def test_a_model_without_a_feature_map_says_so(tmp_path: Path) -> None:
    with ImageIndex.create(tmp_path / "index", model="color-histogram") as index:
        index.add_files([first_photo("hat"), first_photo("shoes")])
        with pytest.raises(NoFeatureMapError, match="color-histogram has no spatial feature map"):
            index.explain(first_photo("hat"), first_photo("shoes"))


def test_resnet50_shows_the_map_its_vector_is_pooled_from(tmp_path: Path) -> None:
    import torch

    from lookalike.embedders.classic import build_network

    torch.manual_seed(0)
    torch.save(build_network("resnet50").eval().state_dict(), tmp_path / "resnet50-random.pth")
    embedder = get_embedder("resnet50", weights=tmp_path / "resnet50-random.pth")
    Image.open(first_photo("hat")).convert("RGB").resize((224, 224)).save(tmp_path / "square.png")
    photo = load_image(tmp_path / "square.png", 224)
    maps = embedder.feature_map(photo)
    pooled = maps.mean(axis=(1, 2))
    vector = embedder.embed_batch(embedder.preprocess(photo)[None])[0]
    assert maps.shape == (2048, 7, 7)
    assert np.allclose(pooled / np.linalg.norm(pooled), vector, atol=1e-4)
