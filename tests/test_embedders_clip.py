"""CLIP-family embedders on tiny random-weight checkpoints: both towers exported to ONNX equal torch, the folder
must be the model it is named for, and a machine without weights (or without the network) is told both ways."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY, REPO
from tiny_clip import IMAGE_SIZE, TEXT_LENGTH, reference_tokens, save_tiny_checkpoint, torch_embeddings

from lookalike.cli import main
from lookalike.embedders import get_embedder, model_info
from lookalike.embedders.clip import ClipEmbedder
from lookalike.images import load_image

TEXTS = ["a photo of a dress", "Red SHOES, worn", "a lamp " * 20]  # mixed case; the last is cut to the length


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-clip"), "clip")


def demo_batch(embedder: ClipEmbedder, count: int = 4) -> np.ndarray:
    photos = sorted(DEMO_GALLERY.glob("*/*.jpg"))[:count]
    return np.stack([embedder.preprocess(load_image(p, embedder.input_side)) for p in photos])


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_both_towers_run_on_onnx_and_equal_torch(tmp_path, family):
    folder = save_tiny_checkpoint(tmp_path / family, family)
    embedder = get_embedder("clip", weights=folder)
    batch = demo_batch(embedder)
    assert batch.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    images = embedder.embed_batch(batch)
    tokens = embedder.text_network.tokens(TEXTS)
    texts = embedder.embed_texts(TEXTS)
    dimension = 24 if family == "clip" else 32  # CLIP projects to projection_dim, SigLIP keeps its hidden size
    assert images.shape == (4, dimension) and texts.shape == (3, dimension) == (3, embedder.dimension)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.abs(images - torch_embeddings(folder, pixels=batch)).max() < 1e-4
    assert np.abs(texts - torch_embeddings(folder, tokens=tokens)).max() < 1e-4
    assert tokens.shape == (3, TEXT_LENGTH) and (tokens == reference_tokens(folder, TEXTS)).all()
    assert embedder.describe()["pool"] == {"clip": "cls", "siglip": "attention"}[family]
    assert ("centre crop" in embedder.describe()["preprocessing"]) == (family == "clip")


def test_each_tower_is_exported_once_under_the_checkpoints_digest(tiny_clip, tmp_path):
    first = get_embedder("clip", weights=tiny_clip)
    first.embed_texts(["a hat"])
    first.embed_batch(demo_batch(first, 1))
    exported = [first.image_network.onnx_path(), first.text_network.onnx_file, first.text_network.tokenizer_file]
    stamps = [path.stat().st_mtime_ns for path in exported]
    again = get_embedder("clip", weights=tiny_clip)
    assert np.allclose(again.embed_texts(["a hat"]), first.embed_texts(["a hat"]))
    assert [path.stat().st_mtime_ns for path in exported] == stamps
    other = get_embedder("clip", weights=save_tiny_checkpoint(tmp_path / "other", seed=1))
    assert other.describe()["version"] != first.describe()["version"]
    assert other.image_network.onnx_path() != exported[0]


def test_a_checkpoint_rewritten_in_place_is_exported_again(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "tuned", seed=2)
    before = get_embedder("clip", weights=folder)
    words = before.embed_texts(["a hat"])
    save_tiny_checkpoint(folder, seed=3)  # same path, new weights (as fine-tuning in place would)
    after = get_embedder("clip", weights=folder)
    assert after.describe()["version"] != before.describe()["version"]
    assert not np.allclose(after.embed_texts(["a hat"]), words)


def test_the_description_records_the_exact_checkpoint(tiny_clip):
    description = get_embedder("clip", weights=tiny_clip).describe()
    assert description["model"] == "clip" and description["weights_file"] == str(tiny_clip)
    assert description["architecture"] == {"model_type": "clip", "patch_size": 8, "image_size": 32, "hidden_size": 32}
    assert description["version"] == f"weights-{description['weights_digest'][:12]}/export-1"
    assert description["towers"] == ["image", "text"]


def test_a_folder_given_for_a_known_name_must_have_its_architecture(tiny_clip):
    with pytest.raises(ValueError, match=r"not a clip-vit-b32 checkpoint: patch_size 8 \(not 32\)"):
        get_embedder("clip-vit-b32", weights=tiny_clip)


def test_layer_and_pool_are_fixed(tiny_clip):
    with pytest.raises(ValueError, match="one layer"):
        get_embedder("clip", weights=tiny_clip, pool="gem")
    assert get_embedder("clip", weights=tiny_clip, layer="projection", pool="cls").layer == "projection"


def test_an_incomplete_folder_names_what_is_missing(tiny_clip, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((tiny_clip / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="no tokenizer.json, model.safetensors or pytorch_model.bin"):
        get_embedder("clip", weights=partial)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        get_embedder("clip", weights=tiny_clip / "config.json")


def test_without_weights_the_error_says_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError) as error:
        get_embedder("clip-vit-b32")
    message = str(error.value)
    assert "no weights for clip-vit-b32" in message and "lookalike models fetch clip-vit-b32" in message
    assert "--weights FOLDER" in message and "openai/clip-vit-base-patch32" in message
    with pytest.raises(FileNotFoundError, match="--weights FOLDER"):
        get_embedder("clip")  # any folder: only one way


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("network", ["offline", "refused"])
def test_fetch_without_network_says_both_ways(tmp_path, network):
    env = os.environ | {"LOOKALIKE_CACHE": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf")}
    env |= {"HF_HUB_OFFLINE": "1"} if network == "offline" else {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    done = subprocess.run([sys.executable, "-m", "lookalike", "models", "fetch", "siglip2-b16"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cannot download google/siglip2-base-patch16-224 from the Hugging Face hub" in done.stderr
    assert "lookalike models fetch siglip2-b16" in done.stderr and "--weights FOLDER" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cache" / "weights" / "siglip2-b16").exists()


def test_fetch_refuses_an_unknown_name(capsys):
    assert main(["models", "fetch", "clip-vit-h99"]) == 2
    assert "knows clip-vit-b32, clip-vit-b16, siglip2-b16" in capsys.readouterr().err
    assert main(["models", "fetch"]) == 2
    assert "lookalike models fetch NAME" in capsys.readouterr().err


def test_models_lists_the_text_models_and_where_their_weights_come_from(capsys):
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "search by text" in lines["clip-vit-b32"] and "openai/clip-vit-base-patch32" in lines["clip-vit-b32"]
    assert "lookalike models fetch siglip2-b16" in lines["siglip2-b16"]
    assert "search by text" not in lines["efficientnet-lite0"]
    assert model_info("clip").text_tower and not model_info("phash").text_tower
