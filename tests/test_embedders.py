"""The default embedder: real ImageNet weights, an ONNX export that matches torch, unit vectors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from lookalike.embedders import get_embedder
from lookalike.embedders.efficientnet import VARIANTS, build_torch_model, packaged_weights
from lookalike.embedders.onnx_runtime import select_providers
from lookalike.images import DecodedImage

# ImageNet class indices that are right for scikit-learn's two sample photos.
PALACE_LIKE = {483: "castle", 663: "monastery", 668: "mosque", 698: "palace", 832: "stupa"}
DAISY = 985


def sample_batch(embedder):
    images = load_sample_images().images  # china.jpg (a temple), flower.jpg (a daisy-like flower)
    decoded = [DecodedImage(Image.fromarray(a), a.shape[1], a.shape[0]) for a in images]
    return np.stack([embedder.preprocess(d) for d in decoded])


def test_weights_are_trained_on_imagenet(embedder):
    top1 = embedder.classify_batch(sample_batch(embedder)).argmax(axis=1)
    assert top1[0] in PALACE_LIKE
    assert top1[1] == DAISY


def test_onnx_export_matches_torch(embedder):
    import torch

    batch = sample_batch(embedder)
    model = build_torch_model(VARIANTS["efficientnet-lite0"], packaged_weights(VARIANTS["efficientnet-lite0"]))
    with torch.no_grad():
        torch_features = model(torch.from_numpy(batch))[0].numpy()
    onnx_features, _ = embedder.run(batch)
    np.testing.assert_allclose(onnx_features, torch_features, atol=1e-3)


def test_vectors_are_unit_length_1280_d(embedder):
    vectors = embedder.embed_batch(sample_batch(embedder))
    assert vectors.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_preprocessing_scales_pixels_as_the_network_was_trained(embedder):
    grey = DecodedImage(Image.new("RGB", (300, 200), (127, 127, 127)), 300, 200)
    white = DecodedImage(Image.new("RGB", (300, 200), (255, 255, 255)), 300, 200)
    assert embedder.preprocess(grey).shape == (3, 224, 224)
    assert np.allclose(embedder.preprocess(grey), 0.0)
    assert np.allclose(embedder.preprocess(white), 1.0)


def test_preprocessed_images_are_channels_first_and_contiguous(embedder):
    """Ready to batch: a batch of transposed views would be re-laid-out on the thread running the network."""
    pixels = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    tensor = embedder.preprocess(DecodedImage(Image.fromarray(pixels), 300, 200))
    assert tensor.flags.c_contiguous and tensor.dtype == np.float32
    resized = np.asarray(Image.fromarray(pixels).resize((336, 224), Image.Resampling.BILINEAR), np.float32)
    expected = (resized[:, 56:280] - 127) / 128  # the centre crop, as (x - 127) / 128
    assert np.abs(tensor - expected.transpose(2, 0, 1)).max() <= 1.5 / 128  # red, green, blue planes in order


def test_description_names_model_version_and_preprocessing(embedder):
    description = embedder.describe()
    assert description["model"] == "efficientnet-lite0" and description["dimension"] == 1280
    assert "(x-127)/128" in description["preprocessing"]
    assert description["version"].startswith("weights-")


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        get_embedder("resnet-9000")


def test_weights_of_the_wrong_architecture_are_refused(tmp_path):
    import torch

    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(RuntimeError, match="does not fit"):
        build_torch_model(VARIANTS["efficientnet-lite0"], tmp_path / "wrong.pth")


def test_cuda_device_needs_the_cuda_provider():
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    assert select_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        select_providers("cuda", ["CPUExecutionProvider"])
