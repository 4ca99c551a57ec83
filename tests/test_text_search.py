"""Searching by words in every skin, mixed queries and zero-shot labels, on a tiny CLIP whose text tower is steered
so that chosen texts embed exactly onto chosen photos' vectors: the photo a text must find is known in advance.

The last test runs only where real weights are (LOOKALIKE_CLIP_WEIGHTS names a checkpoint folder)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY, require_dataset
from fastapi.testclient import TestClient
from tiny_clip import save_tiny_checkpoint, steer_text_tower, torch_embeddings

from lookalike.cli import main
from lookalike.embedders import get_embedder
from lookalike.embedders.spec import NoTextTowerError
from lookalike.evaluation import read_labels
from lookalike.images import load_image
from lookalike.index import ImageIndex, ModelMismatchError
from lookalike.organise.zero_shot import zero_shot_labels
from lookalike.web import ServerSettings, create_app

ANCHORS = {"dress": "a photo of a dress", "shoes": "a photo of a shoes", "hat": "a photo of a hat"}
FREE_TEXT = "rusted flange"  # steered onto a photo of pants


@dataclass(frozen=True)
class Steered:
    """A tiny CLIP steered so that each text embeds exactly onto one demo photo, and an index of the demo gallery."""

    weights: Path
    index: Path
    photo_of: dict[str, Path]  # text -> the photo it was steered onto


def first_photo(label: str) -> Path:
    return sorted((DEMO_GALLERY / label).glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def steered(tmp_path_factory: pytest.TempPathFactory) -> Steered:
    weights = save_tiny_checkpoint(tmp_path_factory.mktemp("steered-clip"))
    embedder = get_embedder("clip", weights=weights)
    photo_of = {text: first_photo(label) for label, text in ANCHORS.items()} | {FREE_TEXT: first_photo("pants")}
    pixels = np.stack([embedder.preprocess(load_image(p, embedder.input_side)) for p in photo_of.values()])
    steer_text_tower(weights, dict(zip(photo_of, torch_embeddings(weights, pixels=pixels), strict=True)))
    folder = tmp_path_factory.mktemp("steered-index") / "words"
    with ImageIndex.create(folder, model="clip", weights=weights, pca=0) as index:
        index.add_folder(DEMO_GALLERY)
    return Steered(weights, folder, photo_of)


def test_text_search_finds_the_photo_the_words_embed_onto(steered):
    with ImageIndex.open(steered.index) as index:
        for text, photo in steered.photo_of.items():
            result = index.search(text=text, k=3)
            assert result.matches[0].path == str(photo), text
            assert result.matches[0].score > result.matches[1].score
            assert result.query == f'"{text}"' and result.query_id is None and "embed_text" in result.timings


def test_a_mixed_query_weighs_the_photo_against_the_words(steered):
    dress, pants = steered.photo_of[ANCHORS["dress"]], steered.photo_of[FREE_TEXT]
    with ImageIndex.open(steered.index) as index:
        dress_id = index.record_by_path(dress).id
        alone = [m.id for m in index.search(id=dress_id, k=5).matches]
        assert [m.id for m in index.search(id=dress_id, text=FREE_TEXT, text_weight=0.0, k=5).matches] == alone
        by_words = [m.id for m in index.search(text=FREE_TEXT, k=6).matches if m.id != dress_id][:5]
        assert [m.id for m in index.search(id=dress_id, text=FREE_TEXT, text_weight=1.0, k=5).matches] == by_words
        assert by_words[0] == index.record_by_path(pants).id
        words = index.searcher.embed_text(FREE_TEXT)[0]
        between = 0.3 * words + 0.7 * index.vectors([dress_id])[0]
        expected = [m.id for m in index.search(vector=between / np.linalg.norm(between), k=6).matches]
        mixed = index.search(id=dress_id, text=FREE_TEXT, text_weight=0.3, k=5)
        assert [m.id for m in mixed.matches] == [i for i in expected if i != dress_id][:5]  # the dress is left out
        assert mixed.query_id == dress_id and mixed.query == f'{dress} + "{FREE_TEXT}"'
        uploaded = index.search(dress.read_bytes(), text=FREE_TEXT, text_weight=0.3, k=6)
        assert [m.id for m in uploaded.matches] == expected  # an upload is not an indexed id: nothing left out
        with pytest.raises(ValueError, match="text_weight"):
            index.search(id=dress_id, text=FREE_TEXT, text_weight=1.5)
        with pytest.raises(ValueError, match="exactly one query"):
            index.search(id=dress_id, random=True, text=FREE_TEXT)
        with pytest.raises(ValueError, match="words to search by"):
            index.search(text="   ")


def test_the_manifest_refuses_another_checkpoint(steered, tmp_path):
    other = save_tiny_checkpoint(tmp_path / "other", seed=7)
    with pytest.raises(ModelMismatchError, match="version: index 'weights-"):
        ImageIndex.open(steered.index, weights=other)
    with ImageIndex.open(steered.index) as index:  # the folder the index recorded is used again
        assert index.manifest.embedder["weights_file"] == str(steered.weights)
        foreign = get_embedder("clip", weights=other)
        with pytest.raises(ModelMismatchError, match="different model"):
            index.search(vector=foreign.embed_texts(["a hat"])[0], model=foreign.describe())


def test_text_on_an_index_without_a_text_tower_is_a_clear_error_in_every_skin(demo_index, capsys):
    with pytest.raises(NoTextTowerError, match="efficientnet-lite0, which embeds images only"):
        demo_index.search(text="a red dress")
    assert main(["search", "--text", "a red dress", "--index", str(demo_index.folder)]) == 2
    assert "cannot be searched by words" in capsys.readouterr().err
    with TestClient(create_app([demo_index.folder], ServerSettings())) as client:
        name = demo_index.folder.name
        answer = client.get(f"/api/indexes/{name}/search", params={"text": "a red dress"})
        assert answer.status_code == 422 and "embeds images only" in answer.json()["detail"]
        assert client.get(f"/api/indexes/{name}").json()["capabilities"]["text_search"] is False


def test_the_cli_searches_by_words_and_mixes_an_image(steered, capsys):
    pants, dress = steered.photo_of[FREE_TEXT], steered.photo_of[ANCHORS["dress"]]
    assert main(["search", "--text", FREE_TEXT, "--index", str(steered.index), "--k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matches"][0]["path"] == str(pants)
    for weight, first in (("1", pants), ("0", None)):  # all words: the pants; no words: the dress's own neighbour
        assert main(["search", str(dress), "--text", FREE_TEXT, "--text-weight", weight, "--index",
                     str(steered.index), "--json"]) == 0
        mixed = json.loads(capsys.readouterr().out)
        assert mixed["query_id"] is not None and str(dress) not in [m["path"] for m in mixed["matches"]]
        with ImageIndex.open(steered.index) as index:
            first = first or Path(index.search(dress, k=1).matches[0].path)
        assert mixed["matches"][0]["path"] == str(first)


def test_http_searches_by_words_alone_and_with_an_upload(steered):
    pants, dress = steered.photo_of[FREE_TEXT], steered.photo_of[ANCHORS["dress"]]
    with TestClient(create_app([steered.index], ServerSettings())) as client:
        search = f"/api/indexes/{steered.index.name}/search"
        assert client.get(f"/api/indexes/{steered.index.name}").json()["capabilities"]["text_search"] is True
        answer = client.get(search, params={"text": FREE_TEXT, "k": 2})
        assert answer.status_code == 200, answer.text
        assert answer.json()["matches"][0]["path"] == str(pants) and answer.json()["query"] == f'"{FREE_TEXT}"'
        mixed = client.post(search, data={"text": FREE_TEXT, "text_weight": "1", "k": "1"},
                            files={"image": ("dress.jpg", dress.read_bytes(), "image/jpeg")})
        assert mixed.status_code == 200, mixed.text
        assert mixed.json()["matches"][0]["path"] == str(pants)
        assert client.get(search, params={"text": " "}).status_code == 422


def test_zero_shot_labels_land_as_labels_the_where_filter_reads(steered, tmp_path, capsys):
    folder = tmp_path / "labelled"
    photos = [steered.photo_of[text] for text in ANCHORS.values()] + sorted((DEMO_GALLERY / "skirt").glob("*.jpg"))
    with ImageIndex.create(folder, model="clip", weights=steered.weights, pca=0) as index:
        index.add_files(photos)
    assert main(["classify", "--index", str(folder), "--labels", "dress, shoes,hat", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == len(photos) == sum(report["counts"].values())
    assert list(report["counts"]) == ["dress", "shoes", "hat"] and report["prompt"] == "a photo of a {label}"
    with ImageIndex.open(folder) as index:
        for label, text in ANCHORS.items():  # each steered photo is its own label's nearest
            assert index.labels(index.record_by_path(steered.photo_of[text]).id) == {"label": label}
        hats = index.search(text=ANCHORS["hat"], where=["label=hat"], k=50).matches
        assert steered.photo_of[ANCHORS["hat"]] in [Path(m.path) for m in hats]
        assert all(m.labels["label"] == "hat" for m in hats)
        assert sum(index.label_counts()["label"].values()) == len(photos)
        with pytest.raises(ValueError, match="at least two labels"):
            zero_shot_labels(index, "chair")
        with pytest.raises(ValueError, match="where the label goes"):
            zero_shot_labels(index, "chair,sofa", prompt="a photo")


def test_zero_shot_labels_need_a_text_tower(demo_clone):
    with pytest.raises(NoTextTowerError):
        zero_shot_labels(demo_clone, "dress,shoes")
    assert "label" not in demo_clone.label_counts()


# --- real weights, where a person has them --------------------------------------------------------------
def real_weights() -> Path:
    configured = os.environ.get("LOOKALIKE_CLIP_WEIGHTS")
    if not configured:
        pytest.skip("no real CLIP weights here: set LOOKALIKE_CLIP_WEIGHTS to a checkpoint folder (e.g. "
                    "`lookalike models fetch clip-vit-b32` on a machine with the hub, then its folder)")
    return Path(configured)


def test_real_weights_rank_dress_photos_above_shoes(tmp_path):
    weights = real_weights()
    clothing = require_dataset("clothing")
    photos = [image for image in read_labels(clothing) if image.label in ("dress", "shoes") and image.split == "test"]
    with ImageIndex.create(tmp_path / "real", model=os.environ.get("LOOKALIKE_CLIP_MODEL", "clip"),
                           weights=weights, pca=0) as index:
        index.add_files(image.path for image in photos)
        ranked = index.search(text="a photo of a dress", k=len(photos)).matches
    is_dress = np.array([Path(m.path).parent.name == "dress" for m in ranked])
    dresses = int(is_dress.sum())
    assert dresses >= 10 and is_dress[:10].all()
    precision_at_hits = np.cumsum(is_dress)[is_dress] / (np.flatnonzero(is_dress) + 1)
    assert precision_at_hits.mean() > 0.9  # average precision of dresses among dresses and shoes
